using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using ResNetGen.Sample;
using Spectre.Console;
using TorchSharp;
using Xunit;
using ResNetGen.Generator.Tests.Infrastructure;

namespace ResNetGen.Generator.Tests.SampleApplication;

/// <summary>The sample's commands, driven in process on a tiny Fashion-MNIST subset, including every bad input.</summary>
public sealed class SampleAppTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("resnetgen-sample-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }

    private string Output => Path.Combine(_folder, "out");

    private static (int Code, string Text) Run(params string[] args) => SampleRunner.Run(args);

    private static (int Code, string Text) Run(CancellationToken cancel, params string[] args) => SampleRunner.Run(cancel, args);

    private static (int Code, string Text) Run(Func<IAnsiConsole, SampleApp> create, params string[] args) => SampleRunner.Run(create, args);

    /// <summary>The first <paramref name="train"/> and <paramref name="test"/> images of the embedded subset, as IDX files.</summary>
    private string TinyData(int train = 256, int test = 64, string name = "data") => TinyDataIn(_folder, train, test, name);

    /// <summary>A Fashion-MNIST subset of <paramref name="train"/> and <paramref name="test"/> images as IDX files in <paramref name="parent"/>/<paramref name="name"/>.</summary>
    internal static string TinyDataIn(string parent, int train = 256, int test = 64, string name = "data")
    {
        var folder = Path.Combine(parent, name);
        Directory.CreateDirectory(folder);
        var assembly = typeof(SampleApp).Assembly;
        void Copy(string name, int headerBytes, int itemBytes, int count)
        {
            using var source = new GZipStream(assembly.GetManifestResourceStream("ResNetGen.Sample.Data." + name)!, CompressionMode.Decompress);
            using var all = new MemoryStream();
            source.CopyTo(all);
            var bytes = all.ToArray().Take(headerBytes + itemBytes * count).ToArray();
            bytes[4] = (byte)(count >> 24); bytes[5] = (byte)(count >> 16); bytes[6] = (byte)(count >> 8); bytes[7] = (byte)count;
            File.WriteAllBytes(Path.Combine(folder, name.Replace(".gz", "")), bytes);
        }
        Copy("train-images-idx3-ubyte.gz", 16, 784, train);
        Copy("train-labels-idx1-ubyte.gz", 8, 1, train);
        Copy("t10k-images-idx3-ubyte.gz", 16, 784, test);
        Copy("t10k-labels-idx1-ubyte.gz", 8, 1, test);
        return folder;
    }

    private static void AssertOneLineError(int code, string text, string expected) => SampleRunner.AssertOneLineError((code, text), expected);

    private static void AssertOneLineError((int Code, string Text) run, string expected) => SampleRunner.AssertOneLineError(run, expected);

    private string Train(string data, int epochs = 1)
    {
        var (code, text) = Run("train", "--data", data, "--epochs", epochs.ToString(), "--limit", "256", "--batch-size", "64", "--output", Output);
        Assert.True(code == 0, text);
        return text;
    }

    [Fact]
    public void Train_evaluate_and_predict_on_a_tiny_subset()
    {
        var data = TinyData();
        var text = Train(data);
        Assert.Contains($"Data: Fashion-MNIST from {data}", text);
        Assert.Contains("Training ResNet20 on 256 images for 1 epoch(s)", text);
        Assert.Contains("test acc", text);
        Assert.Contains("images/s: training steps only (no evaluation); epoch 1 includes one-time warm-up.", text);
        var checkpoint = Path.Combine(Output, SampleApp.Checkpoint);
        Assert.Equal("1", Safetensors.ReadMetadata(checkpoint)["epoch"]);
        Assert.Equal("ResNet20", Safetensors.ReadMetadata(checkpoint)["architecture"]);
        var png = File.ReadAllBytes(Path.Combine(Output, SampleApp.CurvesFile));
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png.Take(4));

        var (code, eval) = Run("eval", "--data", data, "--output", Output);
        Assert.True(code == 0, eval);
        Assert.Contains("Ankle boot", eval);
        Assert.Matches(@"accuracy \d+\.\d\d% on 64 images", eval);

        using var fashion = FashionMnistFrom(data);
        var picture = Path.Combine(_folder, "garment.png");
        Images.SavePng(fashion.TestImages[0], picture);
        var (predictCode, prediction) = Run("predict", picture, "--output", Output, "--top", "2");
        Assert.True(predictCode == 0, prediction);
        Assert.Contains("garment.png", prediction);
        Assert.Matches(@"(T-shirt/top|Trouser|Pullover|Dress|Coat|Sandal|Shirt|Sneaker|Bag|Ankle boot) \d+\.\d%, ", prediction);
    }

    private static FashionMnist FashionMnistFrom(string folder) => FashionMnist.Load(folder);

    [Fact]
    public void Preprocess_writes_the_input_a_published_weight_file_receives_and_finetune_takes_its_preprocessing()
    {
        var picture = Path.Combine(ResNetGen.Generator.Tests.Torchvision.DeterministicWeights.ReferenceFolder, "preprocess", "landscape_300x200.png");
        var file = Path.Combine(_folder, "input.safetensors");
        var (code, text) = Run("preprocess", picture, "--weights", "resnet50-11ad3fa6.pth", "--out", file);
        Assert.True(code == 0, text);
        Assert.Contains("input [1, 3, 224, 224] float32", text);
        Assert.Contains("bilinear resize to 232, 224×224 crop", System.Text.RegularExpressions.Regex.Replace(text, @"\s+", " "));
        var written = Safetensors.Read(file);
        using var expected = ImageFolder.Input(picture, PublishedWeights.Find("resnet50-11ad3fa6.pth")!.Preprocessing);
        Assert.Equal(expected.data<float>().ToArray(), written["input"].data<float>().ToArray());
        Assert.Equal("resnet50-11ad3fa6.pth", Safetensors.ReadMetadata(file)["weights"]);
        foreach (var t in written.Values) t.Dispose();

        // As a log reads it (output redirected, the program in its own process): the long line is one line, not wrapped at 80 columns.
        var redirected = RunProgram(new (string, string?)[] { ("COLUMNS", null) }, "preprocess", picture, "--weights", "resnet50-11ad3fa6.pth", "--out", file);
        Assert.True(redirected.ExitCode == 0, redirected.Output + redirected.Error);
        Assert.Contains(redirected.Output.Split('\n'), l => l.StartsWith("Wrote ", StringComparison.Ordinal) && l.TrimEnd().EndsWith("std 0.229/0.224/0.225.", StringComparison.Ordinal) && l.Length > 120);

        // A timm tag: its own crop fraction and interpolation (235 = floor(224 / 0.95), bicubic).
        (code, text) = Run("preprocess", picture, "--weights", "resnet50.a1_in1k", "--out", file);
        Assert.True(code == 0, text);
        Assert.Contains("bicubic resize to 235", System.Text.RegularExpressions.Regex.Replace(text, @"\s+", " "));

        AssertOneLineError(Run("preprocess", picture, "--weights", "resnet51-00000000.pth", "--out", file), "--weights resnet51-00000000.pth: not a published weight file the sample knows");
        AssertOneLineError(Run("preprocess", Path.Combine(_folder, "none.png"), "--weights", "resnet50.a1_in1k", "--out", file), Path.Combine(_folder, "none.png") + ": no such file");
        var text_png = Path.Combine(_folder, "notes.png");
        File.WriteAllText(text_png, "not a picture at all");
        AssertOneLineError(Run("preprocess", text_png, "--weights", "resnet50.a1_in1k", "--out", file), text_png + " is not a PNG or JPEG picture that can be decoded (its content is neither PNG nor JPEG)");
        // A small budget is said in pixels, not as "0.0 megapixels".
        AssertOneLineError(Run("preprocess", picture, "--weights", "resnet50.a1_in1k", "--out", file, "--max-pixels", "1000"),
            picture + " declares 300×200 pixels (60,000 pixels), over the budget of 1,000 pixels, so it was not decoded.");

        // finetune: the entry named by --from's file name (hash checked) or --weights, matched against --arch.
        var fake = Path.Combine(_folder, "resnet18-f37072fd.pth");
        File.WriteAllText(fake, "not the download");
        AssertOneLineError(Run("finetune", "--images", _folder, "--from", fake), fake + ": its SHA-256 begins");
        AssertOneLineError(Run("finetune", "--images", _folder, "--arch", "resnet18", "--weights", "resnet50-11ad3fa6.pth"),
            "resnet50-11ad3fa6.pth holds resnet50's weights, but --arch is resnet18: pass --arch resnet50.");

        // export and predict: a checkpoint without the sample's metadata (timm's model.safetensors) takes --weights' preprocessing.
        var timm = Path.Combine(_folder, "model.safetensors");
        using (var network = new ResNetGen.Sample.ResNet18(4)) Safetensors.Save(network, timm);
        var model = Path.Combine(_folder, "timm.onnx");
        (code, text) = Run("export", "--checkpoint", timm, "--arch", "resnet18", "--weights", "resnet18.a1_in1k", "--to", model);
        Assert.True(code == 0, text);
        Assert.Contains("Preprocessing (resnet18.a1_in1k's own): bicubic resize to 235", System.Text.RegularExpressions.Regex.Replace(text, @"\s+", " "));
        using (var session = new Microsoft.ML.OnnxRuntime.InferenceSession(model))
            Assert.Equal(PublishedWeights.Find("resnet18.a1_in1k")!.Preprocessing.ToString(), session.ModelMetadata.CustomMetadataMap[Classifier.PreprocessKey]);
        (code, text) = Run("predict", picture, "--checkpoint", timm, "--arch", "resnet18");
        Assert.True(code == 0, text);
        Assert.Contains("model.safetensors is not a published file the sample knows, so resnet18's defaults", System.Text.RegularExpressions.Regex.Replace(text, @"\s+", " "));
        AssertOneLineError(Run("predict", picture, "--checkpoint", timm), timm + " does not hold train's ResNet20 weights (");
        Assert.Contains("predict and export take --arch NAME: resnet18, resnet50", Run("predict", picture, "--checkpoint", timm).Text);
        AssertOneLineError(Run("predict", picture, "--checkpoint", timm, "--arch", "resnet18", "--weights", "resnet50d.ra2_in1k"),
            "resnet50d.ra2_in1k holds resnet50d's weights, but --arch is resnet18: pass --arch resnet50d.");
    }

    [Fact]
    public void Int8_engine_predicts_exports_and_evaluates_and_refuses_bad_calibration()
    {
        var data = TinyData();
        Train(data);
        using var fashion = FashionMnistFrom(data);
        var pictures = Path.Combine(_folder, "pictures");
        Directory.CreateDirectory(pictures);
        for (var i = 0; i < 12; i++) Images.SavePng(fashion.TestImages[i], Path.Combine(pictures, $"garment{i:00}.png"));

        // predict: the int8 engine calibrated on a folder, then on the checkpoint's own training images.
        var (code, text) = Run("predict", pictures, "--output", Output, "--engine", "onnxruntime-int8", "--calibration", pictures);
        Assert.True(code == 0, text);
        Assert.Contains("Quantised to int8 in", text);
        Assert.Contains("from 12 pictures of " + pictures, text);
        Assert.Contains("on ONNX Runtime in this process (the network's int8 engine, built in", text);
        Assert.Equal(12, text.Split('\n').Count(l => l.Contains("garment")));
        (code, text) = Run("predict", pictures, "--output", Output, "--engine", "onnxruntime-int8", "--calibration-count", "40");
        Assert.True(code == 0, text);
        Assert.Matches("from 40 Fashion-MNIST training images", text);

        // export --int8 writes a QDQ graph with the metadata predict --onnx reads; the float export has no QDQ.
        var model = Path.Combine(_folder, "model.int8.onnx");
        (code, text) = Run("export", "--output", Output, "--to", model, "--int8", "--calibration", pictures);
        Assert.True(code == 0, text);
        Assert.Contains("Wrote " + model + ": int8 (QDQ), opset 17", text);
        var graph = OnnxGraphSummary.Read(model);
        Assert.Contains(graph.Nodes, n => n.OpType == "QuantizeLinear");
        Assert.Contains(graph.Initializers, i => i.DataType == 3);
        var (onnxCode, viaOnnx) = Run("predict", pictures, "--onnx", model);
        Assert.True(onnxCode == 0, viaOnnx);
        Assert.Equal(12, viaOnnx.Split('\n').Count(l => l.Contains("garment")));

        // eval: the int8 engine beside the float32 one on the test images.
        (code, text) = Run("eval", "--data", data, "--output", Output, "--engine", "onnxruntime-int8", "--calibration-method", "minmax");
        Assert.True(code == 0, text);
        Assert.Contains("min-max ranges", text);
        Assert.Matches(@"int8 against float32: accuracy \d+\.\d\d% against \d+\.\d\d% \([+-]?\d+\.\d\d points\); the same class for \d+ of 64 pictures", text);

        // Bad calibration and mismatched options: one line each, nothing written.
        AssertOneLineError(Run("predict", pictures, "--output", Output, "--engine", "onnxruntime-int8", "--calibration", Path.Combine(_folder, "none")),
            "--calibration " + Path.Combine(_folder, "none") + ": no such folder");
        var empty = Path.Combine(_folder, "empty");
        Directory.CreateDirectory(empty);
        AssertOneLineError(Run("predict", pictures, "--output", Output, "--engine", "onnxruntime-int8", "--calibration", empty), "--calibration " + empty + ": no PNG or JPEG pictures in it");
        AssertOneLineError(Run("predict", pictures, "--output", Output, "--calibration", pictures), "--calibration is for --engine onnxruntime-int8");
        var other = Path.Combine(_folder, "other.onnx");
        AssertOneLineError(Run("export", "--output", Output, "--to", other, "--calibration", pictures), "--calibration is for --int8");
        AssertOneLineError(Run("export", "--output", Output, "--to", other, "--int8", "--opset", "11"), "--int8 needs --opset 13 or later");
        Assert.False(File.Exists(other));
        SampleRunner.AssertUsageError(Run("predict", pictures, "--engine", "onnxruntime-int8", "--calibration-count", "0"), "--calibration-count 0: must be 1 to 100,000 pictures");
    }

    [Fact]
    public void Train_takes_a_precision_says_which_ran_and_keeps_the_weights_float32_and_finite()
    {
        SampleRunner.AssertUsageError(Run("train", "--precision", "fp64"), "--precision fp64: use fp32, bf16, fp16 or auto. See train --help.");
        // Low precisions run new kernels: in a child process.
        Assert.Contains("trained in bf16 and fp16", Isolated.Run<SampleAppTests>(nameof(TrainInEachPrecision)));
    }

    [Fact]
    public void Train_with_precision_auto_says_what_it_chose_and_why_and_trains_in_it()
    {
        // oneDNN limited to AVX2 stands for a CPU without bfloat16 arithmetic: auto must choose fp32 there and say why.
        var output = Isolated.Run<SampleAppTests>(nameof(TrainWithPrecisionAuto), (OneDnn.IsaVariable, "AVX2"));
        Assert.Contains("auto chose fp32", output);
    }

    [Fact]
    public void Precision_auto_in_a_fresh_program_agrees_with_what_the_onednn_check_then_did()
    {
        // The sample's own process runs no check at start, so --precision auto is the first to ask about this CPU: it must
        // run the check before deciding, or it decides on kernels the check then limits or turns off (the Zen 5 VM).
        var run = RunProgram(new[] { (OneDnn.IsaVariable, (string?)null), (OneDnn.PolicyVariable, null) },
            "train", "--data", TinyData(), "--epochs", "1", "--limit", "64", "--batch-size", "32", "--output", Output, "--precision", "auto");
        var text = run.Output + run.Error;
        Assert.True(run.ExitCode == 0, text);
        var chose = System.Text.RegularExpressions.Regex.Match(text, @"Precision auto chose (\w+):").Groups[1].Value;
        var acted = text.Contains("they are limited to", StringComparison.Ordinal) || text.Contains("oneDNN computed a test convolution wrongly", StringComparison.Ordinal);
        Console.WriteLine($"auto chose {chose}; the check {(acted ? "limited or turned off oneDNN" : "changed nothing")}; AVX512-BF16 or AMX: {CpuCaches.HasBFloat16Arithmetic}");
        Assert.Equal(CpuCaches.HasBFloat16Arithmetic && !acted ? "bf16" : "fp32", chose);
    }

    internal void TrainWithPrecisionAuto()
    {
        var (code, text) = Run("train", "--data", TinyData(), "--epochs", "1", "--limit", "128", "--batch-size", "64", "--output", Output, "--precision", "auto");
        Assert.True(code == 0, text);
        var flat = text.Replace("\n", " ");
        Assert.Contains("Precision auto chose fp32: Precision.BFloat16 on this CPU runs without bfloat16 arithmetic", flat);
        Assert.Contains("oneDNN is limited to AVX2 (ONEDNN_MAX_CPU_ISA)", flat);
        Assert.Contains("Precision: fp32, float32 throughout.", flat);
        Assert.Equal("fp32", Safetensors.ReadMetadata(Path.Combine(Output, SampleApp.Checkpoint))["precision"]);
        Console.WriteLine("auto chose fp32");
    }

    internal void TrainInEachPrecision()
    {
        var data = TinyData();
        foreach (var (flag, line) in new[]
                 {
                     ("bf16", "Precision: bf16, mixed: convolutions and the classifier in bfloat16 over float32 weights"),
                     ("fp16", "Precision: fp16, mixed: convolutions and the classifier in float16 over float32 weights, with dynamic loss scaling"),
                 })
        {
            var (code, text) = Run("train", "--data", data, "--epochs", "1", "--limit", "256", "--batch-size", "64", "--output", Output, "--precision", flag);
            Assert.True(code == 0, text);
            Assert.Contains(line, text.Replace("\n", " "));
            Assert.Equal(flag == "fp16", text.Contains("loss scale"));
            var checkpoint = Path.Combine(Output, SampleApp.Checkpoint);
            Assert.Equal(flag, Safetensors.ReadMetadata(checkpoint)["precision"]);
            foreach (var (key, tensor) in Safetensors.Read(checkpoint))
            {
                using (tensor)
                {
                    Assert.True(tensor.dtype is torch.ScalarType.Float32 or torch.ScalarType.Int64, $"{key} is {tensor.dtype}");
                    if (tensor.dtype == torch.ScalarType.Float32) Assert.True(tensor.isfinite().all().item<bool>(), key + " is not finite");
                }
            }
        }
        Console.WriteLine("trained in bf16 and fp16");
    }

    [Fact]
    public void Bench_times_every_engine_and_names_the_fastest()
    {
        var (code, text) = Run("bench", "--batch", "1", "--runs", "1");
        Assert.True(code == 0, text);
        foreach (var network in new[] { "ResNet20", "ResNet50" })
        {
            var rows = text.Split('\n').Where(l => l.Contains(network + " (")).ToList();
            Assert.Contains(rows, r => r.Contains("TorchSharp ") || r.Contains("TorchSharp │"));
            Assert.Contains(rows, r => r.Contains("TorchSharp, folded"));
            Assert.Contains(rows, r => r.Contains("ONNX Runtime (engine)") && System.Text.RegularExpressions.Regex.IsMatch(r, @"\d+ ms"));
            Assert.Contains(rows, r => r.Contains("ONNX Runtime int8 (engine)") && System.Text.RegularExpressions.Regex.IsMatch(r, @"\d+ ms"));
            Assert.Matches($@"Fastest for {network} \([^)]*\): (TorchSharp|TorchSharp, folded|ONNX Runtime \(engine\)|ONNX Runtime int8 \(engine\)), \d+\.\d\d× TorchSharp's speed", text);
        }
        Assert.Matches("CPU: .*, with(out)? VNNI", text);
        SampleRunner.AssertUsageError(Run("bench", "--runs", "0"), "--runs 0: must be 1 to 256");
    }

    [Fact]
    public void Export_then_predict_on_onnx_runtime_agrees_with_torchsharp()
    {
        var data = TinyData();
        Train(data);
        using var fashion = FashionMnistFrom(data);
        var picture = Path.Combine(_folder, "garment.png");
        Images.SavePng(fashion.TestImages[3], picture);
        var model = Path.Combine(_folder, "model.onnx");
        var (code, text) = Run("export", "--output", Output, "--to", model);
        Assert.True(code == 0, text);
        Assert.Contains("Wrote " + model + ": opset 17", text);
        var (torchCode, viaTorch) = Run("predict", picture, "--output", Output);
        var (onnxCode, viaOnnx) = Run("predict", picture, "--onnx", model);
        Assert.Equal((0, 0), (torchCode, onnxCode));
        Assert.Contains("on ONNX Runtime", viaOnnx);
        string Row(string t) => t.Split('\n').Single(l => l.Contains("garment.png"));
        Assert.Equal(Row(viaTorch), Row(viaOnnx)); // same classes, same rounded probabilities
        // One picture: auto keeps TorchSharp and says why; the engine on request gives the same row.
        Assert.Contains("on TorchSharp (fewer than 10 pictures", viaTorch);
        var (engineCode, viaEngine) = Run("predict", picture, "--output", Output, "--engine", "onnxruntime");
        Assert.True(engineCode == 0, viaEngine);
        Assert.Contains("on ONNX Runtime in this process (the network's engine, built in", viaEngine);
        Assert.Equal(Row(viaTorch), Row(viaEngine));
        SampleRunner.AssertUsageError(Run("predict", picture, "--engine", "tensorrt"), "--engine tensorrt: use auto, onnxruntime, onnxruntime-int8 or torchsharp");

        var notAModel = Path.Combine(_folder, "notes.onnx");
        File.WriteAllText(notAModel, "not protobuf");
        (code, text) = Run("predict", picture, "--onnx", notAModel);
        AssertOneLineError(code, text, notAModel + " is not an ONNX model ONNX Runtime can load");
        SampleRunner.AssertUsageError(Run("export", "--output", Output, "--opset", "7"),
            "--opset 7: must be 9 to 21: the sample's networks need BatchNormalization-9, and 21 is the newest opset ResNetGen has been checked against (default 17). See export --help.");
        SampleRunner.AssertUsageError(Run("export", "--output", Output, "--opset", "30"), "--opset 30: must be 9 to 21");

        var nowhere = Path.Combine(_folder, "missing", "dir", "x.onnx");
        (code, text) = Run("export", "--output", Output, "--to", nowhere);
        AssertOneLineError(code, text, $"cannot write {nowhere}: the folder {Path.GetDirectoryName(nowhere)} does not exist");
        Assert.DoesNotContain(".tmp", text); // the hidden temporary file is never named
        Assert.False(Directory.Exists(Path.Combine(_folder, "missing")));
    }

    [Fact]
    public async Task Ctrl_c_during_training_keeps_the_last_completed_epochs_checkpoint()
    {
        var data = TinyData();
        var checkpoint = Path.Combine(Output, SampleApp.Checkpoint);
        using var cancel = new CancellationTokenSource();
        var watcher = Task.Run(async () =>
        {
            while (!File.Exists(checkpoint)) await Task.Delay(5);
            cancel.Cancel(); // as Ctrl+C does, once epoch 1's checkpoint is on disk
        });
        var (code, text) = Run(cancel.Token, "train", "--data", data, "--epochs", "30", "--limit", "256", "--batch-size", "16", "--output", Output);
        await watcher;
        Assert.Equal(130, code);
        Assert.Contains("Interrupted.", text);
        var epoch = int.Parse(Safetensors.ReadMetadata(checkpoint)["epoch"]);
        Assert.InRange(epoch, 1, 29);
        Assert.Contains($"The checkpoint of epoch {epoch} is intact", text);
        using var network = new ResNet20();
        Safetensors.Load(network, checkpoint); // whole and loadable
        Assert.Empty(Directory.GetFiles(Output, "*.tmp-*"));
    }

    [Fact]
    public void A_missing_data_folder() =>
        AssertOneLineError(Run("train", "--data", Path.Combine(_folder, "nowhere")) is var r ? r.Code : 0, r.Text, "--data " + Path.Combine(_folder, "nowhere") + ": no such folder");

    [Fact]
    public void A_missing_data_file()
    {
        var data = TinyData();
        File.Delete(Path.Combine(data, "t10k-labels-idx1-ubyte"));
        var (code, text) = Run("train", "--data", data, "--epochs", "1");
        AssertOneLineError(code, text, Path.Combine(data, "t10k-labels-idx1-ubyte") + ".gz is missing");
    }

    [Fact]
    public void A_corrupt_or_truncated_data_file()
    {
        var data = TinyData();
        var images = Path.Combine(data, "train-images-idx3-ubyte");
        var bytes = File.ReadAllBytes(images);
        File.WriteAllBytes(images, bytes.Take(bytes.Length - 100).ToArray());
        var (code, text) = Run("train", "--data", data);
        AssertOneLineError(code, text, images + " is truncated: 256 images need 200,720 bytes, the file has 200,620");

        File.Delete(images);
        File.WriteAllBytes(images + ".gz", new byte[] { 0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 });
        (code, text) = Run("train", "--data", data);
        AssertOneLineError(code, text, images + ".gz is corrupt");

        File.WriteAllBytes(images + ".gz", new byte[100]);
        (code, text) = Run("eval", "--data", data, "--output", Output);
        Assert.Equal(1, code); // no checkpoint yet: that is reported first
        Train(TinyData(name: "good"));
        (code, text) = Run("eval", "--data", data, "--output", Output);
        AssertOneLineError(code, text, images + ".gz is not an IDX image file");
    }

    [Fact]
    public void A_file_that_is_not_an_image()
    {
        Train(TinyData());
        var fake = Path.Combine(_folder, "notes.png");
        File.WriteAllText(fake, "these are not pixels");
        var (code, text) = Run("predict", fake, "--output", Output);
        AssertOneLineError(code, text, fake + " is not a PNG or JPEG picture that can be decoded");
        (code, text) = Run("predict", Path.Combine(_folder, "missing.jpg"), "--output", Output);
        AssertOneLineError(code, text, Path.Combine(_folder, "missing.jpg") + ": no such file or folder");
    }

    [Fact]
    public void Predict_reports_an_unreadable_picture_in_its_row_classifies_the_rest_and_explains_inverted()
    {
        var data = TinyData();
        Train(data);
        var pictures = Directory.CreateDirectory(Path.Combine(_folder, "pictures")).FullName;
        using (var fashion = FashionMnistFrom(data))
        {
            Images.SavePng(fashion.TestImages[0], Path.Combine(pictures, "a-dark.png"));
            using var light = torch.full_like(fashion.TestImages[0], 255) - fashion.TestImages[0]; // a light background, as a photo has
            Images.SavePng(light, Path.Combine(pictures, "b-light.png"));
        }
        var broken = Path.Combine(pictures, "c-broken.png");
        File.WriteAllText(broken, "these are not pixels");
        File.WriteAllText(Path.Combine(pictures, "readme.txt"), "not a picture by its name: skipped");

        var (code, text) = Run("predict", pictures, "--output", Output);
        AssertOneLineError(code, text, broken + " is not a PNG or JPEG picture that can be decoded");
        string Row(string name) => text.Split('\n').Single(l => l.Contains(name, StringComparison.Ordinal) && l.Contains('│'));
        Assert.Matches(@"a-dark\.png +│ [A-Za-z/ -]+ \d+\.\d%", Row("a-dark.png"));
        Assert.DoesNotContain("inverted", Row("a-dark.png"));
        Assert.Matches(@"b-light\.png \(inverted\*\) +│ [A-Za-z/ -]+ \d+\.\d%", Row("b-light.png"));
        Assert.Contains("│ unreadable: is not a PNG or JPEG picture that can be decoded", Row("c-broken.png"));
        Assert.DoesNotContain("readme.txt", text);
        // The mark is explained once, under the table.
        Assert.Single(text.Split('\n'), l => l.StartsWith("* inverted: a light background, made dark as in Fashion-MNIST.", StringComparison.Ordinal));
        Assert.True(text.IndexOf("* inverted", StringComparison.Ordinal) > text.IndexOf("c-broken.png", StringComparison.Ordinal));
    }

    [Fact]
    public void A_checkpoint_for_another_architecture()
    {
        Directory.CreateDirectory(Output);
        var foreign = Path.Combine(Output, "resnet50.safetensors");
        using (var resnet50 = new ResNetGen.Sample.ResNet50())
            Safetensors.Write(foreign, resnet50.state_dict(), new Dictionary<string, string> { ["architecture"] = "ResNet50" });
        var (code, text) = Run("eval", "--checkpoint", foreign, "--data", TinyData());
        AssertOneLineError(code, text, foreign + " holds weights for ResNet50, not ResNet20");

        var anonymous = Path.Combine(Output, "other.safetensors");
        using (var other = new Weights.TinyResNet()) Safetensors.Save(other, anonymous);
        (code, text) = Run("eval", "--checkpoint", anonymous, "--data", TinyData());
        AssertOneLineError(code, text, anonymous + " does not hold train's ResNet20 weights (missing keys");
        Assert.Contains("names no architecture in its metadata. For another network's weights (timm's model.safetensors, say), predict and export take --arch NAME", text);

        (code, text) = Run("eval", "--checkpoint", Path.Combine(Output, "none.safetensors"));
        AssertOneLineError(code, text, Path.Combine(Output, "none.safetensors") + ": no checkpoint there");
    }

    [Fact]
    public void Help_and_bad_options()
    {
        var (code, text) = Run("--help");
        Assert.Equal(0, code);
        foreach (var command in new[] { "summary", "train", "eval", "predict", "export", "finetune", "fashion-folder", "preprocess", "bench", "doctor" }) Assert.Contains(command, text);
        (code, text) = Run("train", "--help");
        Assert.Contains("--batch-size", text);
        Assert.Contains("--seed", text);
        (code, text) = Run("eval", "--help");
        Assert.Contains("evaluate only the first N test images", text);
        Assert.DoesNotContain("training images", text);
        SampleRunner.AssertUsageError(Run("train", "--epochs", "0"), "--epochs 0: must be a positive whole number. See train --help.");
        SampleRunner.AssertUsageError(Run("train", "--epochs", "abc"), "--epochs abc: not a whole number. See train --help.");
        SampleRunner.AssertUsageError(Run("train", "--lr", "fast"), "--lr fast: not a number.");
        SampleRunner.AssertUsageError(Run("train", "--device", "tpu"), "--device tpu: unknown device; use cpu or cuda.");
        SampleRunner.AssertUsageError(Run("train", "--epoch", "3"), "Unrecognized command or argument '--epoch'.");
        SampleRunner.AssertUsageError(Run("finetune", "--images", "x", "--trainable-stages", "7"), "--trainable-stages 7: must be 0 to 5");
        SampleRunner.AssertUsageError(Run("finetune"), "Option '--images' is required.");
    }

    [Fact]
    public void The_readme_and_help_name_the_same_commands_options_and_demo_length()
    {
        var readme = System.Text.RegularExpressions.Regex.Replace(Repository.Readme(), @"\s+", " "); // sentences wrap across lines
        var (code, help) = Run("--help");
        Assert.Equal(0, code);
        var commands = System.Text.RegularExpressions.Regex.Matches(help[help.IndexOf("Commands:", StringComparison.Ordinal)..], @"^\s+([a-z][a-z-]+)", System.Text.RegularExpressions.RegexOptions.Multiline)
            .Select(m => m.Groups[1].Value).ToArray();
        Assert.Equal(new[] { "summary", "train", "eval", "predict", "export", "finetune", "fashion-folder", "preprocess", "bench", "doctor" }, commands);
        foreach (var command in commands) Assert.Contains($"`{command}`", readme);

        string DemoLength(string text) => System.Text.RegularExpressions.Regex.Match(text, @"a demo of ([a-z ]+?) on two cores").Groups[1].Value;
        Assert.NotEmpty(DemoLength(help));
        Assert.Equal(DemoLength(help), DemoLength(readme));

        // "`--device cpu|cuda` on those that compute (`train`, …)", "`--seed` on those that draw random numbers (`train`, …)"
        string[] ReadmeSays(string option) => System.Text.RegularExpressions.Regex.Match(readme, "`" + option + @"[^`]*` on those that [a-z ]+ \(([^)]*)\)")
            .Groups[1].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(c => c.Trim('`')).ToArray();
        foreach (var option in new[] { "--device", "--seed" })
        {
            var listed = ReadmeSays(option);
            Assert.NotEmpty(listed);
            var taking = commands.Where(c => Run(c, "--help").Text.Contains(option + " <", StringComparison.Ordinal)).ToArray();
            Assert.Equal(taking, commands.Where(listed.Contains).ToArray());
        }
    }

    /// <summary>The sample as a user starts it: its own process, its own Program.cs, the environment given here.</summary>
    private static ChildExit RunProgram(IEnumerable<(string Name, string? Value)> environment, params string[] args) =>
        ChildProcess.Run(Isolated.WithEnvironment(SampleRunner.Program(args), environment), Isolated.Limit);

    [Theory]
    [InlineData("--epochs abc", "error: --epochs abc: not a whole number. See train --help.")]
    [InlineData("--epoch 3", "error: Unrecognized command or argument '--epoch'. See train --help.")]
    public void The_program_answers_a_bad_command_line_with_one_line_and_exit_code_2(string arguments, string expected)
    {
        var run = RunProgram(Array.Empty<(string, string?)>(), new[] { "train" }.Concat(arguments.Split(' ')).ToArray());
        Assert.True(run.ExitCode == 2, $"{run.Describe(Isolated.Limit)}:\n{run.Output}\n{run.Error}");
        Assert.Equal(expected, run.Output.Trim());
        Assert.DoesNotContain("Unhandled exception", run.Error);
        Assert.DoesNotContain("   at ", run.Output + run.Error);
    }

    [Fact]
    public void The_program_keeps_libtorch_warnings_out_unless_the_user_sets_the_level()
    {
        Train(TinyData());
        var picture = Path.Combine(_folder, "garment.png");
        using (var fashion = FashionMnistFrom(TinyData(name: "pictures"))) Images.SavePng(fashion.TestImages[0], picture);
        static string[] LibTorchLines(ChildExit run) =>
            (run.Output + run.Error).Split('\n').Where(l => l.StartsWith("[W", StringComparison.Ordinal) || l.Contains("NNPACK", StringComparison.Ordinal)).ToArray();

        var quiet = RunProgram(new[] { (LibTorchLog.Variable, (string?)null) }, "predict", picture, "--output", Output);
        Assert.True(quiet.ExitCode == 0, quiet.Output + quiet.Error);
        Assert.Empty(LibTorchLines(quiet));
        Assert.Contains("garment.png", quiet.Output);

        // A level the user sets is kept: at WARNING, a CPU NNPACK does not support (this repository's CI machine among
        // them) shows one warning per convolution layer of ResNet-20, as libtorch prints them.
        var loud = RunProgram(new[] { (LibTorchLog.Variable, (string?)"WARNING") }, "predict", picture, "--output", Output);
        Assert.True(loud.ExitCode == 0, loud.Output + loud.Error);
        var warnings = LibTorchLines(loud);
        Console.WriteLine($"TORCH_CPP_LOG_LEVEL=WARNING: {warnings.Length} libtorch warning lines; unset: 0");
        Assert.All(warnings, l => Assert.Contains("Could not initialize NNPACK", l));
        // Whether this CPU's NNPACK warns at all is asked of libtorch separately, in children of their own at WARNING: one
        // that runs only ResNetGen's oneDNN check (whose NCHW test convolutions warn as any other) and one that runs a
        // convolution after it. Where NNPACK warns, the program prints the check's lines and one per convolution layer
        // of ResNet-20; where not, none.
        var warning = new[] { (LibTorchLog.Variable, (string?)"WARNING") };
        var checkOnly = Isolated.Start(typeof(NnpackProbe).FullName!, nameof(NnpackProbe.CheckOnly), warning);
        var probe = Isolated.Start(typeof(NnpackProbe).FullName!, nameof(NnpackProbe.OneConvolution), warning);
        Assert.True(checkOnly.ExitCode == 0 && probe.ExitCode == 0, checkOnly.Error + probe.Error);
        var checkLines = LibTorchLines(checkOnly).Length;
        var nnpackWarns = LibTorchLines(probe).Length > checkLines;
        Console.WriteLine($"branch: this CPU's NNPACK {(nnpackWarns ? $"warns (unsupported hardware): {checkLines} lines from the check and 21 from the network expected" : "initialises: no line expected")}");
        Assert.Equal(nnpackWarns ? checkLines + 21 : 0, warnings.Length);
    }

    [Fact]
    public void A_run_time_problem_is_one_line_and_exit_code_1_and_an_unexpected_exception_one_line_naming_a_bug()
    {
        (int Code, string Text) Guarded(Func<int> action)
        {
            var writer = new StringWriter();
            var code = new SampleApp(SampleRunner.PlainConsole(writer), CancellationToken.None).Guard(action);
            return (code, writer.ToString());
        }
        SampleRunner.AssertOneLineError(Guarded(() => throw new IOException("cannot write x.onnx: the disk is full")), "cannot write x.onnx: the disk is full");
        SampleRunner.AssertOneLineError(Guarded(() => throw new WeightFileException("w.pth", null, "not a weight file")), "w.pth");
        var previous = Environment.GetEnvironmentVariable("RESNETGEN_SAMPLE_TRACE");
        Environment.SetEnvironmentVariable("RESNETGEN_SAMPLE_TRACE", null);
        try
        {
            var bug = Guarded(() => throw new InvalidOperationException("the first line\nand a second"));
            SampleRunner.AssertOneLineError(bug,
                "unexpected InvalidOperationException: the first line (a bug in the sample; RESNETGEN_SAMPLE_TRACE=1 shows the stack trace).");
            Assert.Single(bug.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Environment.SetEnvironmentVariable("RESNETGEN_SAMPLE_TRACE", "1");
            var traced = Guarded(() => throw new InvalidOperationException("boom"));
            Assert.Equal(1, traced.Code);
            Assert.Contains("(a bug in the sample; trace below)", traced.Text);
            Assert.Contains("   at ", traced.Text);
        }
        finally
        {
            Environment.SetEnvironmentVariable("RESNETGEN_SAMPLE_TRACE", previous);
        }
        Assert.Equal((0, ""), Guarded(() => 0));
    }

    [Fact]
    public void Summary_prints_both_compile_time_tables()
    {
        var (code, text) = Run("summary");
        Assert.Equal(0, code);
        Assert.Contains("Total params: 272,186", text);
        Assert.Contains("Total params: 25,557,032", text);
    }

    [Fact]
    public void Train_with_a_tiny_limit_evaluates_on_at_least_one_image()
    {
        Assert.Equal(1, SampleApp.TestLimit(3));
        Assert.Equal(20, SampleApp.TestLimit(100));
        Assert.Null(SampleApp.TestLimit(null));
        var (code, text) = Run("train", "--data", TinyData(), "--epochs", "1", "--limit", "3", "--batch-size", "2", "--output", Output);
        Assert.True(code == 0, text);
        Assert.DoesNotContain("NaN", text);
        Assert.Contains("Training ResNet20 on 3 images", text);
    }

    [Fact]
    public void Doctor_probes_every_convolution_in_child_processes_and_gives_a_verdict()
    {
        // The children are the sample itself, started from its copy beside the tests.
        var (code, text) = Run(console => new SampleApp(console, CancellationToken.None, SampleRunner.Program), "doctor");
        Assert.True(code == 0, text); // every convolution correct with ResNetGen's defaults, on this CPU as on any
        Assert.Contains("caches (CPUID)", text);
        var libtorch = LibTorch.Describe(); // what this process loaded, which the child loads too
        var flat = System.Text.RegularExpressions.Regex.Replace(text, @"\s+", " ");
        Assert.Contains($"libtorch {libtorch.Version} {(libtorch.CudaBuild ? "CUDA" : "CPU")} build", flat);
        if (!libtorch.CudaBuild) Assert.Contains("CUDA none (a CPU build of libtorch)", flat);
        Assert.Contains("ResNetGen's check", text);
        foreach (var probe in KernelProbes.All) Assert.Contains(probe.Name, text);
        // The verdict depends on the CPU: where libtorch's own defaults fail a probe (the Zen 5 VM), the verdict says only
        // ResNetGen's are correct; where every cell of both columns is "ok" (an Intel Xeon), that both are. It must be the
        // one its own table supports.
        var words = System.Text.RegularExpressions.Regex.Replace(text, @"\s+", " ");
        var cells = KernelProbes.All.Count * 4; // forward and backward, with libtorch's defaults and with ResNetGen's
        var ok = System.Text.RegularExpressions.Regex.Matches(text, @"│ ok \d").Count;
        Assert.True(ok >= cells / 2, $"{ok} of {cells} cells ok: ResNetGen's own column must be all ok");
        var branch = ok == cells
            ? "Every convolution is correct here, with libtorch's defaults and with ResNetGen's."
            : "With ResNetGen's defaults every convolution is correct here.";
        Console.WriteLine($"branch: {ok} of {cells} probe cells ok, so: {branch}");
        Assert.Contains(branch, words);
    }

    [Fact]
    public void An_unknown_probe_is_one_line_naming_the_probes()
    {
        var (code, text) = Run("doctor", "--probe", "5x5");
        Assert.Equal(1, code);
        Assert.Contains("no probe '5x5'. The probes: 1x1-stride1/nchw", text);
    }
}

/// <summary>A child process's one convolution, for asking libtorch whether NNPACK warns on this CPU.</summary>
internal static class NnpackProbe
{
    internal static void CheckOnly() => OneDnn.EnsureChecked(); // the child program has run it already: nothing more

    internal static void OneConvolution()
    {
        using var conv = torch.nn.Conv2d(3, 4, 3);
        using var input = torch.randn(1, 3, 8, 8);
        using var noGrad = torch.no_grad();
        conv.forward(input).Dispose();
    }
}
