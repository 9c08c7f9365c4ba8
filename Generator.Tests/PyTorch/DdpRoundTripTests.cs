using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using ResNetGen.Generator.Tests.SampleApplication;
using ResNetGen.Sample;
using SkiaSharp;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.PyTorch;

/// <summary>
/// finetune in C#, export --pytorch, train on with torchrun and DistributedDataParallel (two processes, gloo), and back:
/// the two processes end with the same network bit for bit, and the checkpoint PyTorch writes loads strictly into the C#
/// network, whose logits for each validation picture are PyTorch's within 1e-4, with the same class.
/// </summary>
public sealed class DdpRoundTripTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("resnetgen-ddp-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private static readonly string[] Kinds = { "circles", "squares", "stripes" };

    /// <summary>32×32 PNG pictures (grayscale and colour, so both PNG colour types are decoded), already the network's size.</summary>
    private string Pictures()
    {
        var root = Path.Combine(_folder, "pictures");
        var seed = 0;
        foreach (var (part, count) in new[] { ("train", 8), ("val", 4) })
        foreach (var kind in Kinds)
        for (var i = 0; i < count; i++)
        {
            var random = new Random(++seed);
            var info = i % 2 == 0 ? new SKImageInfo(32, 32, SKColorType.Gray8, SKAlphaType.Opaque) : new SKImageInfo(32, 32, SKColorType.Rgba8888, SKAlphaType.Premul);
            using var surface = SKSurface.Create(info);
            surface.Canvas.Clear(new SKColor((byte)random.Next(150, 256), (byte)random.Next(150, 256), (byte)random.Next(150, 256)));
            using var paint = new SKPaint { Color = new SKColor((byte)random.Next(0, 100), (byte)random.Next(0, 100), (byte)random.Next(0, 255)), IsAntialias = true };
            var offset = random.Next(-4, 5);
            if (kind == "circles") surface.Canvas.DrawCircle(16 + offset, 16, 9, paint);
            else if (kind == "squares") surface.Canvas.DrawRect(8 + offset, 8, 16, 16, paint);
            else for (var x = offset & 7; x < 32; x += 8) surface.Canvas.DrawRect(x, 0, 4, 32, paint);
            using var image = surface.Snapshot();
            using var data = image.Encode(SKEncodedImageFormat.Png, 100);
            var path = Path.Combine(root, part, kind, $"{i}.png");
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllBytes(path, data.ToArray());
        }
        return root;
    }

    [Fact]
    public void Finetune_here_train_on_with_two_ddp_processes_and_score_the_same_in_csharp()
    {
        var pictures = Pictures();
        var runs = Path.Combine(_folder, "runs");
        // In a process of its own: finetune seeds libtorch's global generator, which tests running in parallel here would
        // draw from too, so the starting weights (and the loss curve below) would change from run to run.
        var limit = TimeSpan.FromMinutes(5);
        var finetune = ChildProcess.Run(SampleRunner.Program(new[] { "finetune", "--images", pictures, "--arch", "resnet18", "--epochs", "1", "--size", "32", "--trainable-stages", "1",
            "--crop-pct", "1", "--interpolation", "bilinear", "--batch-size", "8", "--output", runs }), limit);
        Assert.True(finetune.ExitCode == 0 && !finetune.TimedOut, $"finetune: {finetune.Describe(limit)}:\n{finetune.Output}\n{finetune.Error}");
        var export = Path.Combine(_folder, "to-pytorch");
        var (code, text) = SampleRunner.Run("export", "--checkpoint", Path.Combine(runs, SampleApp.FineTunedCheckpointFor("resnet18")), "--pytorch", export);
        Assert.True(code == 0, text);
        Assert.Contains("torchrun --standalone --nproc_per_node=2", text);

        var output = Path.Combine(_folder, "ddp");
        var log = Twins.RunTorchrun(_folder, 2, Path.Combine(export, "train_ddp.py"), "--images", pictures, "--epochs", "3", "--output", output,
            "--batch-size", "8", "--trainable-stages", "5", "--save-logits", "--save-ranks");
        var epochs = Regex.Matches(log, @"epoch (\d+)/3: train loss ([0-9.]+), val accuracy ([0-9.]+) \((\d+)/(\d+)\), ([0-9.]+) pictures/s over 2 process\(es\)");
        Assert.True(epochs.Count == 3, log);
        double Loss(int i) => double.Parse(epochs[i].Groups[2].Value, CultureInfo.InvariantCulture);
        Assert.True(Loss(2) < Loss(0), $"the loss did not fall:\n{log}");
        var correct = int.Parse(epochs[2].Groups[4].Value, CultureInfo.InvariantCulture);
        var total = int.Parse(epochs[2].Groups[5].Value, CultureInfo.InvariantCulture);
        Assert.Equal(3 * 4, total);

        // The two processes hold the same network: every parameter and buffer equal bit for bit, and rank 0 saved it.
        var checkpoint = Path.Combine(output, "finetune-ddp.safetensors");
        var ranks = new[] { 0, 1 }.Select(r => Safetensors.Read(Path.Combine(output, $"rank-{r}.safetensors"))).ToArray();
        var saved = Safetensors.Read(checkpoint);
        try
        {
            Assert.Equal(saved.Keys.OrderBy(k => k, StringComparer.Ordinal), ranks[1].Keys.OrderBy(k => k, StringComparer.Ordinal));
            Assert.Contains("layer4.1.bn2.running_var", saved.Keys);
            foreach (var (key, tensor) in saved)
            foreach (var rank in ranks)
            {
                Assert.Equal(tensor.dtype, rank[key].dtype);
                Assert.True(tensor.bytes.SequenceEqual(rank[key].bytes), $"{key}: the processes differ (largest difference {(tensor.to(torch.float64) - rank[key].to(torch.float64)).abs().max().item<double>():G3})");
            }
            // Training changed it: the ranks agree on something other than the starting point.
            using var started = Safetensors.Read(Path.Combine(export, "weights.safetensors"))["layer1.0.conv1.weight"];
            Assert.False(started.bytes.SequenceEqual(saved["layer1.0.conv1.weight"].bytes));
        }
        finally
        {
            foreach (var t in ranks.SelectMany(r => r.Values).Concat(saved.Values)) t.Dispose();
        }

        // Back in C#: the checkpoint loads strictly, and the sample's own preprocessing gives each validation picture the
        // logits PyTorch computed for it (float32 both, TF32 off there), within 1e-4, the same class, so the same count.
        var metadata = Safetensors.ReadMetadata(checkpoint);
        Assert.Equal("ResNet18", metadata["architecture"]);
        var classes = Classifier.ClassesFrom(metadata)!;
        Assert.Equal(Kinds, classes);
        var preprocessing = Preprocessing.Parse(metadata[Classifier.PreprocessKey])!;
        using var network = Sample.Architecture.Named("resnet18").Create(classes.Length);
        Safetensors.Load(network, checkpoint, strict: true);
        network.eval();
        var logitsFile = Path.Combine(output, "val-logits.safetensors");
        var files = System.Text.Json.JsonSerializer.Deserialize<string[]>(Safetensors.ReadMetadata(logitsFile)["files"])!;
        using var theirs = Safetensors.Read(logitsFile)["logits"];
        Assert.Equal(new long[] { total, classes.Length }, theirs.shape);
        Assert.Equal(Kinds.SelectMany(k => Directory.GetFiles(Path.Combine(pictures, "val", k))).Order(StringComparer.Ordinal), files.Order(StringComparer.Ordinal));
        var ours = 0;
        var largest = 0.0;
        using (torch.no_grad())
        {
            for (var i = 0; i < files.Length; i++)
            {
                using var input = ImageFolder.Input(files[i], preprocessing);
                using var logits = network.call(input);
                using var row = theirs[i];
                var difference = (logits[0] - row).abs().max().item<float>();
                largest = Math.Max(largest, difference);
                Assert.True(difference <= 1e-4, $"{files[i]}: C# logits [{string.Join(", ", logits[0].data<float>().ToArray())}], PyTorch's [{string.Join(", ", row.data<float>().ToArray())}]");
                var predicted = logits.argmax(1).item<long>();
                Assert.Equal(row.argmax().item<long>(), predicted);
                if (classes[(int)predicted] == Path.GetFileName(Path.GetDirectoryName(files[i]))) ours++;
            }
        }
        Assert.True(ours == correct, $"C# scores {ours}/{total}, PyTorch {correct}/{total}:\n{log}");
        Console.WriteLine($"largest logit difference C# vs PyTorch: {largest:G3}");
        (code, text) = SampleRunner.Run("predict", Path.Combine(pictures, "val", "circles"), "--checkpoint", checkpoint, "--top", "1");
        Assert.True(code == 0, text);
    }
}
