using System;
using System.Buffers.Binary;
using System.Diagnostics;
using System.IO;
using System.IO.Compression;
using System.Linq;
using ResNetGen.Benchmarks;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Sample;
using SkiaSharp;
using Xunit;
using static ResNetGen.Generator.Tests.SampleApplication.SampleRunner;

namespace ResNetGen.Generator.Tests.SampleApplication;

/// <summary>
/// The picture budget end to end: every command that reads pictures or Fashion-MNIST's files refuses a file declaring more
/// than <c>--max-pixels</c> before decoding it, naming the size it declares — <c>train</c>, <c>eval</c> and
/// <c>fashion-folder</c> on an IDX file (a 1 GB gzip bomb), <c>predict</c> with a Fashion-MNIST and an image-folder
/// checkpoint, <c>finetune</c>, <c>eval --images</c>, the int8 engine's calibration in <c>predict</c> and
/// <c>export --int8</c>, and <c>preprocess</c> — each run timed and its peak memory measured in a child process; and
/// each one passes a lowered <c>--max-pixels</c> on, refusing an ordinary file it would otherwise read.
/// </summary>
public sealed class PictureBudgetTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("resnetgen-budget-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }

    private const string FolderVariable = "RESNETGEN_TEST_BUDGET_FOLDER";

    [Fact]
    public void Every_command_refuses_what_declares_more_than_the_budget_quickly_in_bounded_memory_and_passes_max_pixels_on() =>
        Isolated.Run<PictureBudgetTests>(nameof(EveryCommandInThisProcess), (FolderVariable, _folder));

    /// <summary>
    /// Fashion-MNIST's files with a training image file that declares <paramref name="count"/> images and holds them: zeros,
    /// gzip-compressed as they are written (1.4 M images are 1 GB decompressed, about 1 MB on disk).
    /// </summary>
    internal static string FashionBomb(string parent, int count)
    {
        var folder = SampleAppTests.TinyDataIn(parent, name: "bomb-data");
        var images = Path.Combine(folder, "train-images-idx3-ubyte");
        File.Delete(images);
        using (var file = File.Create(images + ".gz"))
        using (var gzip = new GZipStream(file, CompressionLevel.SmallestSize))
        {
            var header = new byte[16];
            BinaryPrimitives.WriteInt32BigEndian(header, 2051);
            BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), count);
            BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(8), 28);
            BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(12), 28);
            gzip.Write(header);
            var zeros = new byte[784 * 1000];
            for (var written = 0; written < count; written += 1000) gzip.Write(zeros, 0, 784 * Math.Min(1000, count - written));
        }
        var labels = Path.Combine(folder, "train-labels-idx1-ubyte");
        var labelHeader = File.ReadAllBytes(labels).Take(8).ToArray();
        BinaryPrimitives.WriteInt32BigEndian(labelHeader.AsSpan(4), count);
        File.WriteAllBytes(labels, labelHeader.Concat(new byte[count]).ToArray());
        return folder;
    }

    internal static void EveryCommandInThisProcess()
    {
        var folder = Environment.GetEnvironmentVariable(FolderVariable)!;
        var data = SampleAppTests.TinyDataIn(folder);
        var bombData = FashionBomb(folder, 1_400_000);
        var onDisk = new FileInfo(Path.Combine(bombData, "train-images-idx3-ubyte.gz")).Length;
        Assert.True(onDisk < 8_000_000, $"the IDX bomb is small on disk: {onDisk:N0} bytes");
        var fashion = Path.Combine(folder, "fashion");
        var (code, text) = Run("train", "--data", data, "--epochs", "1", "--limit", "256", "--batch-size", "64", "--output", fashion);
        Assert.True(code == 0, text);
        var fashionCheckpoint = Path.Combine(fashion, SampleApp.Checkpoint);
        var clean = HostilePictureTests.PictureFolder(Path.Combine(folder, "clean"));
        var tuned = Path.Combine(folder, "tuned");
        (code, text) = Run("finetune", "--images", clean, "--size", "32", "--batch-size", "4", "--epochs", "1", "--output", tuned);
        Assert.True(code == 0, text);
        var tunedCheckpoint = Path.Combine(tuned, SampleApp.FineTunedCheckpoint);
        var hostile = Path.Combine(folder, "hostile");
        HostilePictureTests.WriteHostileFolder(hostile); // three files declaring 400 to 3600 megapixels, and d-fine.png
        var bombed = HostilePictureTests.PictureFolder(Path.Combine(folder, "bombed"));
        var bomb = Path.Combine(bombed, "val", "dark", "z-bomb.png");
        var zeros = new byte[20000];
        HostilePictureTests.WritePng(bomb, 20000, 20000, 0, _ => zeros);
        File.Copy(bomb, Path.Combine(bombed, "train", "dark", "z-bomb.png"));
        var idx = Path.Combine(bombData, "train-images-idx3-ubyte.gz");
        const string IdxSays = " declares 1,400,000 images of 28×28 (1098 megapixels), over the budget of 89 megapixels, so it was not read";
        const string BombSays = " declares 20000×20000 pixels (400 megapixels), over the budget of 89 megapixels";
        var small = Path.Combine(clean, "val", "dark", "0.png");
        const string SmallSays = " declares 40×30 pixels (1,200 pixels), over the budget of 1,000 pixels";

        var runs = new (string What, string[] Args, Action<int, string> Check)[]
        {
            ("train, IDX bomb", new[] { "train", "--data", bombData, "--epochs", "1", "--output", Path.Combine(folder, "never") },
                (c, t) => AssertOneLineError((c, t), idx + IdxSays)),
            ("eval, IDX bomb", new[] { "eval", "--data", bombData, "--checkpoint", fashionCheckpoint }, (c, t) => AssertOneLineError((c, t), idx + IdxSays)),
            ("fashion-folder, IDX bomb", new[] { "fashion-folder", "--data", bombData, "--to", Path.Combine(folder, "never-folder") },
                (c, t) => AssertOneLineError((c, t), idx + IdxSays)),
            ("train, --max-pixels below the data", new[] { "train", "--data", data, "--epochs", "1", "--output", Path.Combine(folder, "never"), "--max-pixels", "99999" },
                (c, t) => AssertOneLineError((c, t), Path.Combine(data, "train-images-idx3-ubyte") + " declares 256 images of 28×28 (0.2 megapixels), over the budget of 99,999 pixels")),
            ("predict, Fashion-MNIST checkpoint", new[] { "predict", hostile, "--checkpoint", fashionCheckpoint }, (c, t) => AssertRows(c, t)),
            ("predict, image-folder checkpoint", new[] { "predict", hostile, "--checkpoint", tunedCheckpoint }, (c, t) => AssertRows(c, t)),
            ("predict, image-folder checkpoint, --max-pixels", new[] { "predict", small, "--checkpoint", tunedCheckpoint, "--max-pixels", "1000" },
                (c, t) => { Assert.Equal(1, c); Assert.Contains("unreadable:" + SmallSays, t); }),
            ("predict, Fashion-MNIST checkpoint, --max-pixels", new[] { "predict", small, "--checkpoint", fashionCheckpoint, "--max-pixels", "1000" },
                (c, t) => { Assert.Equal(1, c); Assert.Contains("unreadable:" + SmallSays, t); }),
            ("finetune, a bomb among the pictures", new[] { "finetune", "--images", bombed, "--size", "32", "--epochs", "1", "--output", Path.Combine(folder, "never-tuned") },
                (c, t) =>
                {
                    AssertOneLineError((c, t), "2 of 14 pictures could not be read (listed above)");
                    Assert.Contains("  " + Path.Combine(bombed, "train", "dark", "z-bomb.png") + BombSays, t);
                }),
            ("finetune, --max-pixels", new[] { "finetune", "--images", clean, "--size", "32", "--epochs", "1", "--output", Path.Combine(folder, "never-tuned"), "--max-pixels", "1000" },
                (c, t) => AssertOneLineError((c, t), "12 of 12 pictures could not be read (listed above)")),
            ("eval --images, a bomb among the validation pictures", new[] { "eval", "--images", bombed, "--checkpoint", tunedCheckpoint },
                (c, t) => AssertOneLineError((c, t), bomb + BombSays)),
            ("eval --images, --max-pixels", new[] { "eval", "--images", clean, "--checkpoint", tunedCheckpoint, "--max-pixels", "1000" },
                (c, t) => Assert.Contains(SmallSays, t)),
            ("predict, int8 calibration on a hostile folder", new[] { "predict", small, "--checkpoint", tunedCheckpoint, "--engine", "onnxruntime-int8", "--calibration", hostile },
                (c, t) =>
                {
                    Assert.True(c == 0, t);
                    Assert.Contains("3 unreadable skipped, the first: " + Path.Combine(hostile, "a-header-only.png") + " declares 40000×40000 pixels", t);
                }),
            ("export --int8, calibration on a hostile folder, --max-pixels", new[] { "export", "--checkpoint", tunedCheckpoint, "--int8", "--calibration", hostile,
                    "--to", Path.Combine(folder, "never.onnx"), "--max-pixels", "1000" },
                (c, t) => AssertOneLineError((c, t), $"--calibration {hostile}: none of its 4 pictures could be read; the first: ")),
            ("preprocess, a bomb", new[] { "preprocess", bomb, "--weights", "resnet50-11ad3fa6.pth", "--out", Path.Combine(folder, "never.safetensors") },
                (c, t) => AssertOneLineError((c, t), bomb + BombSays)),
        };
        foreach (var (what, args, check) in runs)
        {
            var clock = new Stopwatch();
            var (c, t) = (0, "");
            var grew = HostilePictureTests.PeakGrowth(() =>
            {
                clock.Start();
                (c, t) = Run(args);
                clock.Stop();
            });
            try
            {
                check(c, t);
            }
            catch (Exception e)
            {
                throw new Xunit.Sdk.XunitException($"{what}: {e.Message}\n{t}");
            }
            Assert.DoesNotContain("a bug in the sample", t);
            // The int8 engine's two ONNX Runtime sessions (calibration, then int8) take about 550 MB of their own; the smallest
            // of the refused pictures would take 1,600 MB decoded.
            var bound = what.Contains("int8", StringComparison.Ordinal) ? 1000L << 20 : 500L << 20;
            Assert.True(grew < bound, $"{what}: peak memory grew by {grew >> 20} MB");
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"{what}: took {clock.Elapsed.TotalSeconds:0.0} s");
            Console.WriteLine($"{what}: {clock.Elapsed.TotalSeconds:0.00} s, peak +{grew >> 20} MB");
        }
        // Nothing was written by a refused command.
        foreach (var never in new[] { "never", "never-folder", "never-tuned", "never.onnx", "never.safetensors" })
            Assert.False(Path.Exists(Path.Combine(folder, never)), never);

        void AssertRows(int c, string t)
        {
            Assert.Equal(1, c);
            string Row(string name) => t.Split('\n').Single(l => l.Contains(name, StringComparison.Ordinal) && l.Contains('│'));
            Assert.Contains("unreadable: declares 40000×40000 pixels (1600 megapixels), over the budget of 89 megapixels", Row("a-header-only.png"));
            Assert.Contains("unreadable: declares 20000×20000 pixels (400 megapixels)", Row("b-bomb.png"));
            Assert.Contains("unreadable: declares 60000×60000 pixels (3600 megapixels)", Row("c-lying.jpg"));
            Assert.Matches(@"d-fine\.png.*│ [A-Za-z/ -]+ \d+\.\d%", Row("d-fine.png"));
        }
    }
}
