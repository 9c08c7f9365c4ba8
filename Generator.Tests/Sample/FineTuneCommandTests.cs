using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.Weights;
using ResNetGen.Sample;
using SkiaSharp;
using TorchSharp;
using Xunit;
using static ResNetGen.Generator.Tests.SampleApplication.SampleRunner;

namespace ResNetGen.Generator.Tests.SampleApplication;

/// <summary>
/// The sample's finetune on small folders of pictures the tests draw (colour JPEGs and grayscale PNGs of several
/// sizes), from a torchvision-shaped ResNet-18 checkpoint; then predict and export with what it wrote; and every bad
/// folder and checkpoint as one line that changes nothing.
/// </summary>
public sealed class FineTuneCommandTests : IDisposable
{
    private static readonly string[] ClassNames = { "circles", "squares", "stripes" };
    private readonly string _folder = Directory.CreateTempSubdirectory("resnetgen-finetune-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }

    private string Output => Path.Combine(_folder, "out");

    /// <summary>Draws one picture of <paramref name="kind"/>: JPEG in colour or PNG in grayscale, of the given size.</summary>
    private static void Draw(string path, string kind, int width, int height, int seed)
    {
        var random = new Random(seed);
        var info = path.EndsWith(".png", StringComparison.Ordinal)
            ? new SKImageInfo(width, height, SKColorType.Gray8, SKAlphaType.Opaque)
            : new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul);
        using var surface = SKSurface.Create(info);
        var canvas = surface.Canvas;
        canvas.Clear(new SKColor((byte)random.Next(200, 256), (byte)random.Next(200, 256), (byte)random.Next(200, 256)));
        using var paint = new SKPaint { Color = new SKColor((byte)random.Next(0, 120), (byte)random.Next(0, 120), (byte)random.Next(0, 255)), IsAntialias = true };
        var s = Math.Min(width, height);
        switch (kind)
        {
            case "circles":
                canvas.DrawCircle(width / 2f, height / 2f, s / 3f, paint);
                break;
            case "squares":
                canvas.DrawRect(width / 4f, height / 4f, s / 2f, s / 2f, paint);
                break;
            default:
                for (var x = 0; x < width; x += s / 4) canvas.DrawRect(x, 0, s / 8f, height, paint);
                break;
        }
        using var image = surface.Snapshot();
        using var data = image.Encode(path.EndsWith(".png", StringComparison.Ordinal) ? SKEncodedImageFormat.Png : SKEncodedImageFormat.Jpeg, 90);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, data.ToArray());
    }

    /// <summary>DIR/train/&lt;class&gt;/ with <paramref name="train"/> pictures a class and DIR/val/&lt;class&gt;/ with <paramref name="val"/>.</summary>
    private string Pictures(string name = "pictures", int train = 4, int val = 2, string[]? classes = null)
    {
        var root = Path.Combine(_folder, name);
        var seed = 0;
        foreach (var (part, count) in new[] { ("train", train), ("val", val) })
        foreach (var kind in classes ?? ClassNames)
        for (var i = 0; i < count; i++)
        {
            seed++;
            var png = i % 2 == 1;
            Draw(Path.Combine(root, part, kind, $"{i}{(png ? ".png" : ".jpg")}"), kind, 40 + 7 * i, 64 - 5 * i, seed);
        }
        return root;
    }

    /// <summary>
    /// A ResNet-18 with torchvision's 1000-class head, saved as torch.save writes torchvision's checkpoints (under a name of
    /// its own: torchvision's file name would be checked against the download's SHA-256, which these weights are not).
    /// </summary>
    private string Pretrained(out Dictionary<string, torch.Tensor> state)
    {
        torch.manual_seed(7);
        using var network = new ResNet18();
        state = network.state_dict().ToDictionary(p => p.Key, p => p.Value.clone());
        return TorchSave.StateDict(Path.Combine(_folder, "resnet18-pretrained.pth"), state, "resnet18-pretrained");
    }

    private static (int, string) FineTune(string images, string? from, string output, params string[] more)
    {
        var args = new List<string> { "finetune", "--images", images, "--size", "32", "--batch-size", "4", "--output", output };
        if (!more.Contains("--epochs")) args.AddRange(new[] { "--epochs", "2" });
        if (from is not null) args.AddRange(new[] { "--from", from });
        args.AddRange(more);
        return Run(args.ToArray());
    }

    [Fact]
    public void Finetune_in_bfloat16_says_so_and_writes_float32_weights() =>
        Assert.Contains("fine-tuned in bf16", Isolated.Run<FineTuneCommandTests>(nameof(FineTuneInBFloat16)));

    internal void FineTuneInBFloat16()
    {
        var (code, text) = FineTune(Pictures(), Pretrained(out _), Output, "--precision", "bf16", "--epochs", "1");
        Assert.True(code == 0, text);
        Assert.Contains("Precision: bf16, mixed", text);
        var checkpoint = Path.Combine(Output, SampleApp.FineTunedCheckpoint);
        Assert.Equal("bf16", Safetensors.ReadMetadata(checkpoint)["precision"]);
        var weights = Safetensors.Read(checkpoint);
        Assert.All(weights, w => Assert.True(w.Value.dtype is torch.ScalarType.Float32 or torch.ScalarType.Int64, w.Key));
        foreach (var w in weights.Values) w.Dispose();
        Console.WriteLine("fine-tuned in bf16");
    }

    [Fact]
    public void Finetune_from_a_torchvision_checkpoint_then_predict_and_export()
    {
        var images = Pictures();
        var pth = Pretrained(out var pretrained);
        var (code, text) = FineTune(images, pth, Output);
        Assert.True(code == 0, text);
        Assert.Contains("Pictures: 12 to train on and 6 to validate on, 3 classes (circles, squares, stripes)", text);
        Assert.Contains("ResNet18 from resnet18-pretrained.pth (all but its classifier, made for another class count: fc starts afresh for 3)", text);
        Assert.Contains("training layer4 and fc: 8,395,267 of 11,178,051 parameters", text);
        Assert.Contains("val acc", text);
        // A log reads in order: no bar for epoch 2 before epoch 2 runs (it said "epoch 2/2: 0%" while epoch 1 trained
        // whenever the progress was drawn during epoch 1); a bar is made with its first figures.
        Assert.DoesNotContain("epoch 2/2: 0%", text);

        var checkpoint = Path.Combine(Output, SampleApp.FineTunedCheckpoint);
        var metadata = Safetensors.ReadMetadata(checkpoint);
        Assert.Equal("ResNet18", metadata["architecture"]);
        Assert.Equal("[\"circles\",\"squares\",\"stripes\"]", metadata["classes"]);
        // torchvision's transforms for its weights: bilinear, crop fraction 0.875, ImageNet's normalisation.
        Assert.Equal("resize-crop:size=32,crop_pct=0.875,interpolation=bilinear,mean=0.485/0.456/0.406,std=0.229/0.224/0.225", metadata["preprocess"]);
        Assert.Equal("2", metadata["epoch"]);
        var trained = Safetensors.Read(checkpoint);
        try
        {
            // Frozen: the stem and layer1-3, batch-norm statistics included, exactly as in the file; layer4 moved on; fc new.
            foreach (var (key, value) in pretrained.Where(p => !p.Key.StartsWith("layer4.", StringComparison.Ordinal) && !p.Key.StartsWith("fc.", StringComparison.Ordinal)))
                Assert.True(WeightTestKit.Same(trained[key], value), key + " changed although frozen");
            Assert.False(WeightTestKit.Same(trained["layer4.1.conv2.weight"], pretrained["layer4.1.conv2.weight"]));
            Assert.False(WeightTestKit.Same(trained["layer4.1.bn2.running_mean"], pretrained["layer4.1.bn2.running_mean"]));
            Assert.Equal(new long[] { 3, 512 }, trained["fc.weight"].shape);
        }
        finally
        {
            foreach (var t in trained.Values.Concat(pretrained.Values)) t.Dispose();
        }
        Assert.True(File.Exists(Path.Combine(Output, SampleApp.FineTunedCurves)));

        var val = Path.Combine(images, "val", "squares");
        var (predictCode, viaTorch) = Run("predict", val, "--checkpoint", checkpoint, "--top", "3");
        Assert.True(predictCode == 0, viaTorch);
        Assert.Matches(@"0\.jpg\s*│ (circles|squares|stripes) \d+\.\d%, (circles|squares|stripes) \d+\.\d%, (circles|squares|stripes) \d+\.\d%", viaTorch);

        var model = Path.Combine(_folder, "pictures.onnx");
        var (exportCode, exported) = Run("export", "--checkpoint", checkpoint, "--to", model);
        Assert.True(exportCode == 0, exported);
        Assert.Contains("input [N, 3, H, W], output logits [N, 3]", exported);
        var (onnxCode, viaOnnx) = Run("predict", val, "--onnx", model, "--top", "3");
        Assert.True(onnxCode == 0, viaOnnx);
        string Rows(string t) => string.Join("\n", t.Split('\n').Where(l => l.Contains(".jpg") || l.Contains(".png")));
        Assert.Equal(Rows(viaTorch), Rows(viaOnnx)); // the class names and preprocessing travel in the ONNX metadata
    }

    [Fact]
    public void From_scratch_every_layer_trains_and_a_second_run_continues_from_the_first()
    {
        var images = Pictures(train: 2, val: 1);
        var (code, text) = FineTune(images, null, Output, "--trainable-stages", "5", "--epochs", "1");
        Assert.True(code == 0, text);
        Assert.Contains("ResNet18 from random initialisation (no --from); training every layer: 11,178,051 of 11,178,051 parameters", text);

        // Same classes: the classifier is kept too (training goes on where it stopped).
        var first = Path.Combine(Output, SampleApp.FineTunedCheckpoint);
        var again = Path.Combine(_folder, "again");
        (code, text) = FineTune(images, first, again, "--trainable-stages", "0", "--epochs", "1");
        Assert.True(code == 0, text);
        Assert.Contains("(every tensor, the classifier included); training the classifier only (fc): 1,539 of", text);

        // Other classes, same count: the classifier trained on them is not kept.
        var renamed = Pictures("renamed", train: 2, val: 1, classes: new[] { "a", "b", "c" });
        (code, text) = FineTune(renamed, first, Path.Combine(_folder, "renamed-out"), "--epochs", "1");
        Assert.True(code == 0, text);
        Assert.Contains("(all but its classifier, trained on other classes: fc starts afresh)", text);
    }

    [Theory]
    [InlineData("resnet50d", "ResNet50d", "fc", "layer4 and fc", "bicubic resize to 36, 32×32 crop (crop fraction 0.875), mean 0.485/0.456/0.406, std 0.229/0.224/0.225",
        "resize-crop:size=32,crop_pct=0.875,interpolation=bicubic,mean=0.485/0.456/0.406,std=0.229/0.224/0.225")]
    [InlineData("resnetv2_50x1_bit", "ResNetV2_50x1_Bit", "head.fc", "stages.3, norm and head.fc", "bilinear resize to 36, 32×32 crop (crop fraction 0.875), mean 0.5/0.5/0.5, std 0.5/0.5/0.5",
        "resize-crop:size=32,crop_pct=0.875,interpolation=bilinear,mean=0.5/0.5/0.5,std=0.5/0.5/0.5")]
    public void Finetune_a_timm_network_from_its_own_safetensors_with_timms_preprocessing_then_predict_and_export(string arch, string className, string head,
        string trainable, string preprocessing, string metadataText)
    {
        var images = Pictures(train: 2, val: 1);
        // timm's state_dict as a model.safetensors (1000 classes; no num_batches_tracked, as cleaned files come): the
        // generated network's own keys are timm's (the timm-family tests check them against timm).
        var timm = Path.Combine(_folder, "model.safetensors");
        using (var pretrained = Sample.Architecture.Named(arch).Create(1000))
            Safetensors.Write(timm, pretrained.state_dict().Where(p => !p.Key.EndsWith("num_batches_tracked", StringComparison.Ordinal)).ToDictionary(p => p.Key, p => p.Value));
        var (code, text) = FineTune(images, timm, Output, "--arch", arch, "--epochs", "1");
        Assert.True(code == 0, text);
        Assert.Contains($"{className} from model.safetensors (all but its classifier, made for another class count: {head} starts afresh for 3); training {trainable}:", text);
        Assert.Contains($"Preprocessing (model.safetensors is not a published file the sample knows, so {arch}'s defaults; --weights NAME names its source): {preprocessing}.",
            System.Text.RegularExpressions.Regex.Replace(text, @"\s+", " "));
        var checkpoint = Path.Combine(Output, SampleApp.FineTunedCheckpointFor(arch));
        var metadata = Safetensors.ReadMetadata(checkpoint);
        Assert.Equal(className, metadata["architecture"]);
        Assert.Equal(metadataText, metadata["preprocess"]);
        Assert.True(File.Exists(Path.Combine(Output, SampleApp.FineTunedCurvesFor(arch))));

        var val = Path.Combine(images, "val", "stripes");
        var (predictCode, viaTorch) = Run("predict", val, "--checkpoint", checkpoint, "--top", "2");
        Assert.True(predictCode == 0, viaTorch);
        var model = Path.Combine(_folder, arch + ".onnx");
        var (exportCode, exported) = Run("export", "--checkpoint", checkpoint, "--to", model);
        Assert.True(exportCode == 0, exported);
        var (onnxCode, viaOnnx) = Run("predict", val, "--onnx", model, "--top", "2");
        Assert.True(onnxCode == 0, viaOnnx);
        string Rows(string t) => string.Join("\n", t.Split('\n').Where(l => l.Contains(".jpg") || l.Contains(".png")));
        Assert.Equal(Rows(viaTorch), Rows(viaOnnx));
    }

    [Fact]
    public void The_preprocessing_can_be_given_and_bad_values_are_one_line()
    {
        var images = Pictures(train: 1, val: 1);
        var (code, text) = FineTune(images, null, Output, "--arch", "seresnext50_32x4d", "--epochs", "1", "--crop-pct", "1", "--interpolation", "bilinear",
            "--mean", "0.5/0.5/0.5", "--std", "0.5,0.5,0.5");
        Assert.True(code == 0, text);
        Assert.Contains("SeResNeXt50_32x4d from random initialisation (no --from); training every layer", text); // nothing loaded: no stage stays random and frozen
        Assert.Contains("Preprocessing: bilinear resize to 32, 32×32 crop (crop fraction 1), mean 0.5/0.5/0.5, std 0.5/0.5/0.5.", text);
        Assert.Equal("resize-crop:size=32,crop_pct=1,interpolation=bilinear,mean=0.5/0.5/0.5,std=0.5/0.5/0.5",
            Safetensors.ReadMetadata(Path.Combine(Output, SampleApp.FineTunedCheckpointFor("seresnext50_32x4d")))["preprocess"]);

        AssertUsageError(FineTune(images, null, Output, "--arch", "resnet999"), "--arch resnet999: not a network of this sample; use one of: resnet18, resnet50, resnet50d, seresnext50_32x4d, resnetv2_50x1_bit.");
        AssertUsageError(FineTune(images, null, Output, "--crop-pct", "1.5"), "--crop-pct 1.5: must be above 0.3 and at most 1");
        AssertUsageError(FineTune(images, null, Output, "--interpolation", "nearest"), "--interpolation nearest: not an interpolation; use bilinear, bicubic, mitchell.");
        AssertUsageError(FineTune(images, null, Output, "--std", "0.2/0/0.2"), "--std 0.2/0/0.2: needs three numbers R/G/B");
        AssertUsageError(FineTune(images, null, Output, "--mean", "0.5/0.5"), "--mean 0.5/0.5: needs three numbers R/G/B");
    }

    [Fact]
    public void Predict_and_export_read_a_checkpoint_without_the_samples_metadata_as_the_arch_given()
    {
        var images = Pictures(train: 1, val: 1);
        var timm = Path.Combine(_folder, "seresnext.safetensors");
        torch.manual_seed(3);
        using (var network = new ResNetGen.Sample.SeResNeXt50_32x4d(4)) Safetensors.Save(network, timm);
        var labels = Path.Combine(_folder, "labels.txt");
        File.WriteAllLines(labels, new[] { "ant", "bee", "cat", "dog" });
        var val = Path.Combine(images, "val", "circles");
        var (code, text) = Run("predict", val, "--checkpoint", timm, "--arch", "seresnext50_32x4d", "--labels", labels, "--top", "4");
        Assert.True(code == 0, text);
        Assert.Matches(@"0\.jpg\s*│ (ant|bee|cat|dog) \d+\.\d%, (ant|bee|cat|dog) \d+\.\d%, (ant|bee|cat|dog) \d+\.\d%, (ant|bee|cat|dog) \d+\.\d%", text);
        (code, text) = Run("predict", val, "--checkpoint", timm, "--arch", "seresnext50_32x4d", "--top", "1");
        Assert.True(code == 0, text);
        Assert.Matches(@"0\.jpg\s*│ class [0-3] \d+\.\d%", text);
        var model = Path.Combine(_folder, "seresnext.onnx");
        (code, text) = Run("export", "--checkpoint", timm, "--arch", "seresnext50_32x4d", "--labels", labels, "--to", model);
        Assert.True(code == 0, text);
        Assert.Contains("output logits [N, 4]", text);

        AssertOneLineError(Run("predict", val, "--checkpoint", timm, "--arch", "resnet50d"), $"{timm} does not hold resnet50d weights (missing keys conv1.0.weight");
        File.WriteAllLines(labels, new[] { "ant", "bee" });
        AssertOneLineError(Run("predict", val, "--checkpoint", timm, "--arch", "seresnext50_32x4d", "--labels", labels), $"{timm} has a classifier of 4 classes, but {labels} names 2.");
    }

    [Fact]
    public void Bad_folders_are_one_line_each_and_write_nothing()
    {
        var missing = Path.Combine(_folder, "nowhere");
        AssertOneLineError(FineTune(missing, null, Output), $"--images {missing}: no such folder");

        var noVal = Path.Combine(_folder, "noval");
        Directory.CreateDirectory(Path.Combine(noVal, "train", "a"));
        AssertOneLineError(FineTune(noVal, null, Output), $"{noVal} has no val folder: lay the pictures out as {noVal}/train/<class>/ and {noVal}/val/<class>/");

        var noClasses = Path.Combine(_folder, "noclasses");
        Directory.CreateDirectory(Path.Combine(noClasses, "train"));
        Directory.CreateDirectory(Path.Combine(noClasses, "val"));
        File.WriteAllText(Path.Combine(noClasses, "train", "loose.png"), "");
        AssertOneLineError(FineTune(noClasses, null, Output), $"{noClasses}/train has no class folders");

        var one = Pictures("one", train: 2, val: 1, classes: new[] { "cats" });
        AssertOneLineError(FineTune(one, null, Output), $"{one}/train has one class folder (cats); a classifier needs at least two classes");

        var empty = Pictures("empty", train: 2, val: 1);
        foreach (var file in Directory.GetFiles(Path.Combine(empty, "train", "squares"))) File.Delete(file);
        File.WriteAllText(Path.Combine(empty, "train", "squares", "notes.txt"), "to do");
        AssertOneLineError(FineTune(empty, null, Output), $"{empty}/train/squares has no PNG or JPEG pictures (it has 1 other file)");

        var stranger = Pictures("stranger", train: 2, val: 1);
        Directory.Move(Path.Combine(stranger, "val", "stripes"), Path.Combine(stranger, "val", "zebras"));
        AssertOneLineError(FineTune(stranger, null, Output), $"{stranger}/val/zebras is not a class of {stranger}/train (its classes: circles, squares, stripes)");

        var broken = Pictures("broken", train: 2, val: 1);
        var truncated = Path.Combine(broken, "train", "circles", "0.jpg");
        File.WriteAllBytes(truncated, File.ReadAllBytes(truncated).Take(200).ToArray());
        File.WriteAllText(Path.Combine(broken, "val", "squares", "fake.png"), "not a picture");
        var run = FineTune(broken, null, Output);
        AssertOneLineError(run, "2 of 10 pictures could not be read (listed above). Remove or replace them, or pass --skip-unreadable to train on the rest; nothing was trained.");
        // One report of every refused picture with its reason, before the error.
        Assert.Contains("2 of 10 pictures could not be read:", run.Item2);
        Assert.Contains($"  {truncated} is not a PNG or JPEG picture that can be decoded", run.Item2);
        Assert.Contains($"  {broken}/val/squares/fake.png is not a PNG or JPEG picture that can be decoded", run.Item2);

        Assert.False(Directory.Exists(Output)); // no checkpoint, no curves, not even the folder
    }

    [Fact]
    public void A_checkpoint_for_another_network_is_one_line()
    {
        var images = Pictures(train: 1, val: 1);
        var resnet50 = Path.Combine(_folder, "resnet50.pth");
        using (var network = new ResNetGen.Sample.ResNet50()) TorchSave.StateDict(resnet50, network.state_dict());
        AssertOneLineError(FineTune(images, resnet50, Output), $"{resnet50} does not hold resnet18 weights (unexpected keys layer1.0.conv3.weight, layer1.0.bn3.weight, layer1.0.bn3.bias, layer1.0.downsample.0.weight, layer1.0.downsample.1.weight and 193 more). --from needs resnet18 weights: torchvision's resnet18-f37072fd.pth");

        var resnet20 = Path.Combine(_folder, "fashion-resnet20.safetensors");
        using (var network = new ResNet20())
            Safetensors.Write(resnet20, network.state_dict(), new Dictionary<string, string> { ["architecture"] = "ResNet20" });
        AssertOneLineError(FineTune(images, resnet20, Output), $"{resnet20} holds weights for ResNet20, not ResNet18. --from needs resnet18 weights");

        var anonymous = Path.Combine(_folder, "anonymous.safetensors");
        using (var network = new ResNet20()) Safetensors.Save(network, anonymous);
        AssertOneLineError(FineTune(images, anonymous, Output), $"{anonymous} does not hold resnet18 weights");

        var none = Path.Combine(_folder, "none.pth");
        AssertOneLineError(FineTune(images, none, Output), $"--from {none}: no such file");
        // Told before the pictures are even looked at: with no picture folder either, the missing --from is what is said.
        AssertOneLineError(FineTune(Path.Combine(_folder, "no-pictures"), none, Output), $"--from {none}: no such file");
        Assert.False(Directory.Exists(Output));
    }

    [Fact]
    public void Fashion_folder_writes_the_classes_asked_for_and_never_over_an_existing_folder()
    {
        var to = Path.Combine(_folder, "fashion");
        var (code, text) = Run("fashion-folder", "--to", to, "--classes", "5-7,9", "--train-per-class", "3", "--val-per-class", "2");
        Assert.True(code == 0, text);
        Assert.Equal(new[] { "Ankle-boot", "Sandal", "Shirt", "Sneaker" }, Directory.GetDirectories(Path.Combine(to, "train")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.All(Directory.GetDirectories(Path.Combine(to, "train")), d => Assert.Equal(3, Directory.GetFiles(d, "*.png").Length));
        Assert.All(Directory.GetDirectories(Path.Combine(to, "val")), d => Assert.Equal(2, Directory.GetFiles(d, "*.png").Length));
        Assert.Equal(4, ImageFolder.Open(to, new Preprocessing(32, 0.875, "bilinear", Preprocessing.ImageNetMean, Preprocessing.ImageNetStd)).Classes.Count);

        AssertOneLineError(Run("fashion-folder", "--to", to, "--classes", "0-1"), $"{to}/train already exists; nothing was written");
        AssertOneLineError(Run("fashion-folder", "--to", Path.Combine(_folder, "x"), "--classes", "3-1"), "--classes 3-1: '3-1' is not a Fashion-MNIST label or range");
        AssertOneLineError(Run("fashion-folder", "--to", Path.Combine(_folder, "x"), "--classes", "4"), "--classes 4: a classifier needs at least two classes");
        Assert.Equal(new[] { 0, 1, 2, 5, 9 }, SampleApp.ParseClasses("0-2, 9,5"));
    }
}
