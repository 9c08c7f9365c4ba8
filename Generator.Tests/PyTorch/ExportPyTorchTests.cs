using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.SampleApplication;
using ResNetGen.Generator.Tests.Torchvision;
using ResNetGen.Sample;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.PyTorch;

/// <summary>The sample's export --pytorch: the twin, the weights and the helpers, loaded by Debian's PyTorch.</summary>
public sealed class ExportPyTorchTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("resnetgen-export-pytorch-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    /// <summary>
    /// Writes a checkpoint of <paramref name="network"/> (deterministic weights) as train or finetune would; returns its
    /// logits for the deterministic input and the tolerance for comparing them (<see cref="Twins.RelativeFor"/>).
    /// </summary>
    private (float[] Logits, double Relative) Checkpoint(torch.nn.Module<torch.Tensor, torch.Tensor> network, string path, string[] classes, string preprocess, long[] inputShape)
    {
        DeterministicWeights.Apply(network);
        var metadata = Classifier.Metadata(classes, preprocess);
        metadata["architecture"] = network.GetType().Name;
        Safetensors.Write(path, network.state_dict(), metadata);
        network.eval();
        using var noGrad = torch.no_grad();
        using var input = DeterministicWeights.Input(inputShape);
        DeterministicWeights.WriteFloats(path + ".input.bin", input);
        using var logits = network.call(input);
        network.to(torch.float64);
        using var input64 = input.to(torch.float64);
        using var logits64 = network.call(input64);
        return (logits.data<float>().ToArray(), Twins.RelativeFor(logits, logits64));
    }

    [Fact]
    public void Trains_and_finetunes_checkpoints_load_in_pytorch_with_their_classes_and_compute_the_same()
    {
        var cases = new (string Name, torch.nn.Module<torch.Tensor, torch.Tensor> Network, string[] Classes, string Preprocess, long[] Shape)[]
        {
            // train's checkpoint: Fashion-MNIST's classes and preprocessing.
            ("resnet20", new ResNetGen.Sample.ResNet20(), FashionMnist.Classes.ToArray(), Classifier.FashionMnistPreprocess, new long[] { 2, 1, 28, 28 }),
            ("resnet18", Sample.Architecture.Named("resnet18").Create(3), new[] { "dots", "stripes", "plain" },
                "resize-crop:size=64,crop_pct=0.875,interpolation=bilinear,mean=0.485/0.456/0.406,std=0.229/0.224/0.225", new long[] { 2, 3, 64, 64 }),
            ("bit", Sample.Architecture.Named("resnetv2_50x1_bit").Create(2), new[] { "cat", "dog" },
                "resize-crop:size=64,crop_pct=0.875,interpolation=bilinear,mean=0.5/0.5/0.5,std=0.5/0.5/0.5", new long[] { 2, 3, 64, 64 }),
        };
        var script = new List<string> { "import sys", "import numpy as np", "import torch" };
        var expected = new Dictionary<string, (float[] Logits, double Relative)>();
        foreach (var (name, network, classes, preprocess, shape) in cases)
        {
            using (network)
            {
                var checkpoint = Path.Combine(_folder, name + ".safetensors");
                expected[name] = Checkpoint(network, checkpoint, classes, preprocess, shape);
                var target = Path.Combine(_folder, name);
                var (code, text) = SampleRunner.Run("export", "--checkpoint", checkpoint, "--pytorch", target);
                Assert.True(code == 0, text);
                Assert.Contains($"model.py (the PyTorch twin of {network.GetType().Name})", text);
                Assert.All(SampleApp.PyTorchFiles, f => Assert.True(File.Exists(Path.Combine(target, f)), f));
                // The exported weights are a checkpoint predict and export read as they are.
                var metadata = Safetensors.ReadMetadata(Path.Combine(target, "weights.safetensors"));
                Assert.Equal(network.GetType().Name, metadata["architecture"]);
                Assert.Equal(preprocess, metadata["preprocess"]);
                // Each in a fresh interpreter state: the modules are all named model, checkpoint, safetensors_io.
                script.Add($"sys.path.insert(0, {Py(target)})");
                script.Add("for m in ('model', 'checkpoint', 'safetensors_io'): sys.modules.pop(m, None)");
                script.Add("import checkpoint");
                script.Add($"assert checkpoint.CLASSES == {Py(classes)}, checkpoint.CLASSES");
                script.Add($"assert checkpoint.PREPROCESS == {Py(preprocess)}");
                script.Add("net = checkpoint.load()");
                script.Add($"x = torch.from_numpy(np.fromfile({Py(checkpoint + ".input.bin")}, dtype='<f4').reshape({string.Join(", ", shape)}))");
                script.Add($"with torch.no_grad(): net(x).numpy().astype('<f4').tofile({Py(Path.Combine(_folder, name + ".out"))})");
                // And back: what PyTorch saves with safetensors_io (metadata kept) is a checkpoint the sample reads.
                script.Add($"checkpoint.safetensors_io.save({Py(Path.Combine(_folder, name + ".back.safetensors"))}, net.state_dict(), checkpoint.METADATA)");
                script.Add("sys.path.pop(0)");
            }
        }
        var path = Path.Combine(_folder, "check.py");
        File.WriteAllLines(path, script);
        Twins.RunPython(_folder, path);
        foreach (var (name, _, classes, _, shape) in cases)
        {
            using var ours = torch.tensor(expected[name].Logits).reshape(shape[0], classes.Length);
            using var theirs = torch.tensor(DeterministicWeights.ReadFloats(Path.Combine(_folder, name + ".out"))).reshape(shape[0], classes.Length);
            Tolerance.AssertClose(ours, theirs, name + " exported to PyTorch", expected[name].Relative);
            var back = Path.Combine(_folder, name + ".back.safetensors");
            var exportedAgain = Path.Combine(_folder, name + ".back.onnx");
            var (code, text) = SampleRunner.Run("export", "--checkpoint", back, "--to", exportedAgain);
            Assert.True(code == 0, text); // PyTorch's file, with the metadata it kept, is a checkpoint as the sample wrote it
            Assert.Equal(Safetensors.ReadMetadata(Path.Combine(_folder, name + ".safetensors")), Safetensors.ReadMetadata(back));
            var original = Safetensors.Read(Path.Combine(_folder, name + ".safetensors"));
            var returned = Safetensors.Read(back);
            Assert.Equal(original.Keys.OrderBy(k => k, StringComparer.Ordinal), returned.Keys.OrderBy(k => k, StringComparer.Ordinal));
            Assert.All(original.Keys, k => Assert.True(Weights.WeightTestKit.Same(original[k], returned[k]), k)); // bit for bit
        }
    }

    [Fact]
    public void Pytorch_and_an_onnx_file_at_once_is_one_line()
    {
        var checkpoint = Path.Combine(_folder, "ck.safetensors");
        using (var network = new ResNetGen.Sample.ResNet20()) Checkpoint(network, checkpoint, Enumerable.Range(0, 10).Select(i => "c" + i).ToArray(), Classifier.FashionMnistPreprocess, new long[] { 1, 1, 28, 28 });
        SampleRunner.AssertOneLineError(SampleRunner.Run("export", "--checkpoint", checkpoint, "--pytorch", Path.Combine(_folder, "out"), "--to", Path.Combine(_folder, "x.onnx")),
            "--pytorch and --to: give one (a PyTorch folder, or an .onnx file).");
        Assert.False(Directory.Exists(Path.Combine(_folder, "out")));
    }

    [Fact]
    public void An_untrained_architecture_exports_with_its_preprocessing_and_loads_in_pytorch()
    {
        var target = Path.Combine(_folder, "untrained");
        var labels = Path.Combine(_folder, "labels.txt");
        File.WriteAllLines(labels, new[] { "cat", "dog", "bird" });
        var (code, text) = SampleRunner.Run("export", "--untrained", "--arch", "resnet50d", "--labels", labels, "--pytorch", target);
        Assert.True(code == 0, text);
        Assert.Contains("model.py (the PyTorch twin of ResNet50d)", text);
        var metadata = Safetensors.ReadMetadata(Path.Combine(target, "weights.safetensors"));
        Assert.Equal("ResNet50d", metadata["architecture"]);
        Assert.Equal(Sample.Architecture.Named("resnet50d").Preprocessing.ToString(), metadata["preprocess"]);
        var script = Path.Combine(_folder, "untrained.py");
        File.WriteAllLines(script, new[]
        {
            $"import sys; sys.path.insert(0, {Py(target)})",
            "import checkpoint, torch",
            "net = checkpoint.load()",
            "assert checkpoint.CLASSES == ['cat', 'dog', 'bird'], checkpoint.CLASSES",
            "with torch.no_grad(): assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 3)",
            "print('loaded')",
        });
        Assert.Contains("loaded", Twins.RunPython(_folder, script));
        SampleRunner.AssertOneLineError(SampleRunner.Run("export", "--untrained", "--pytorch", target), "--untrained needs --arch NAME: one of");
        SampleRunner.AssertOneLineError(SampleRunner.Run("export", "--untrained", "--arch", "resnet18"), "--untrained writes a PyTorch model: add --pytorch DIR (and --arch NAME).");
    }

    [Fact]
    public void Train_ddp_names_the_fix_when_cuda_is_asked_for_and_missing_or_when_processes_outnumber_the_gpus()
    {
        var target = Path.Combine(_folder, "to-pytorch");
        var (code, text) = SampleRunner.Run("export", "--untrained", "--arch", "resnet18", "--pytorch", target);
        Assert.True(code == 0, text);
        // CUDA is faked either way (absent, or one GPU), so the test means the same on a machine with GPUs; both refusals
        // come before any picture is read (the images folder does not exist).
        string Refusal(bool available, string localRank, params string[] arguments)
        {
            var start = new System.Diagnostics.ProcessStartInfo(Twins.Python) { WorkingDirectory = _folder };
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add($"import runpy, sys, torch; torch.cuda.is_available = lambda: {(available ? "True" : "False")}; "
                                   + "torch.cuda.device_count = lambda: 1; "
                                   + $"sys.argv = ['train_ddp.py'] + {Py(arguments)}; runpy.run_path({Py(Path.Combine(target, "train_ddp.py"))}, run_name='__main__')");
            start.Environment["LOCAL_RANK"] = localRank;
            start.Environment["LOCAL_WORLD_SIZE"] = "2";
            var limit = TimeSpan.FromMinutes(2);
            var exit = ChildProcess.Run(start, limit);
            Assert.True(exit.ExitCode == 1 && !exit.TimedOut, $"{exit.Describe(limit)}:\n{exit.Output}\n{exit.Error}");
            return exit.Error.Trim();
        }
        var images = new[] { "--images", Path.Combine(_folder, "none") };
        Assert.Equal("--device cuda: this PyTorch sees no CUDA device (torch.cuda.is_available() is False); use --device cpu",
            Refusal(false, "0", images.Append("--device").Append("cuda").ToArray()));
        Assert.Equal("2 processes on this machine but 1 GPU(s): NCCL needs one GPU per process. Start at most --nproc_per_node=1, or train on the CPU with --device cpu",
            Refusal(true, "1", images));
        // --device cpu on the same machine goes past both, to the missing folder.
        Assert.Contains("needs train/<class>/ and val/<class>/ folders", Refusal(true, "1", images.Append("--device").Append("cpu").ToArray()));
    }

    /// <summary>The README's Python snippet for PyTorchSource and Safetensors.Save, run as printed, beside the files it names.</summary>
    [Fact]
    public void The_readmes_python_snippet_runs_as_printed()
    {
        var readme = Repository.Readme();
        var start = readme.IndexOf("File.WriteAllText(\"model.py\", ResNet20.PyTorchSource);", StringComparison.Ordinal);
        Assert.True(start >= 0, "the README's PyTorchSource example is gone");
        var block = readme.IndexOf("```python\n", start, StringComparison.Ordinal) + "```python\n".Length;
        var snippet = readme[block..readme.IndexOf("```", block, StringComparison.Ordinal)];
        File.WriteAllText(Path.Combine(_folder, "model.py"), ResNetGen.Sample.ResNet20.PyTorchSource);
        using (var net = new ResNetGen.Sample.ResNet20()) Safetensors.Save(net, Path.Combine(_folder, "weights.safetensors"));
        File.Copy(Path.Combine(Repository.Root(), "Sample", "PyTorch", "safetensors_io.py"), Path.Combine(_folder, "safetensors_io.py"));
        var script = Path.Combine(_folder, "snippet.py");
        File.WriteAllText(script, $"import sys; sys.path.insert(0, {Py(_folder)})\n" + snippet + "print('loaded', sum(p.numel() for p in net.parameters()))\n");
        Assert.Contains($"loaded {ResNetGen.Sample.ResNet20.ParameterCount}", Twins.RunPython(_folder, script));
    }

    [Fact]
    public void Train_ddp_prepares_pictures_byte_for_byte_as_the_sample_does()
    {
        var target = Path.Combine(_folder, "to-pytorch");
        var (code, text) = SampleRunner.Run("export", "--untrained", "--arch", "resnet50", "--pytorch", target);
        Assert.True(code == 0, text);
        var preprocessing = Sample.Architecture.Named("resnet50").Preprocessing; // bilinear, 256 → 224
        // Transparent ones too: train_ddp.py decodes PNGs itself and must drop the alpha as PIL and the sample do.
        var pictures = new[] { "landscape_300x200.png", "grey_257x256.png", "thin_37x400.png", "photo_480x360.jpg", "transparent_320x240.png", "grey_alpha_150x220.png", "palette_260x200.png" }
            .Select(p => Path.Combine(Torchvision.DeterministicWeights.ReferenceFolder, "preprocess", p)).ToArray();
        var script = Path.Combine(_folder, "prepare.py");
        File.WriteAllLines(script, new[]
        {
            $"import sys; sys.path.insert(0, {Py(target)})",
            "import numpy as np, train_ddp",
            $"p = train_ddp.Preprocessing({Py(preprocessing.ToString())})",
            $"for i, path in enumerate({Py(pictures)}):",
            $"    p.crop(p.load(path)).numpy().astype('<f4').tofile({Py(_folder)} + f'/input{{i}}.bin')",
            "print('prepared', p.resized)",
        });
        Assert.Contains("prepared 6", Twins.RunPython(_folder, script)); // six resized; the 257×256 one is at 256 already
        for (var i = 0; i < pictures.Length; i++)
        {
            using var expected = Sample.ImageFolder.Input(pictures[i], preprocessing);
            var python = Torchvision.DeterministicWeights.ReadFloats(Path.Combine(_folder, $"input{i}.bin"));
            Tolerance.AssertClose(python, expected, $"train_ddp.py's input for {Path.GetFileName(pictures[i])}");
            var largest = python.Zip(expected.data<float>().ToArray(), (a, b) => Math.Abs(a - b)).Max();
            Assert.True(largest < 1e-6, $"{Path.GetFileName(pictures[i])}: train_ddp.py's input is {largest} from the sample's (PIL's resize on both sides)");
        }
    }

    private static string Py(string text) => "'" + text.Replace("\\", "\\\\").Replace("'", "\\'") + "'";

    private static string Py(string[] items) => "[" + string.Join(", ", items.Select(Py)) + "]";
}
