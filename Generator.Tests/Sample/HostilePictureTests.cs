using System;
using System.Buffers.Binary;
using System.Diagnostics;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Text;
using ResNetGen.Benchmarks;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Sample;
using SkiaSharp;
using Xunit;
using static ResNetGen.Generator.Tests.SampleApplication.SampleRunner;

namespace ResNetGen.Generator.Tests.SampleApplication;

/// <summary>
/// Pictures from strangers: files written here that declare huge sizes (a header-only PNG, a decompression bomb, a JPEG
/// whose header claims 60000×60000) are refused before decoding, quickly and without the memory they claim, each in a
/// child process where time and peak memory are measured; the other pictures are still classified or trained on.
/// </summary>
public sealed class HostilePictureTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("resnetgen-hostile-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }

    // ---- crafted files ----

    /// <summary>A PNG (8-bit, <paramref name="colourType"/> 0 gray or 2 RGB) whose rows are <paramref name="row"/>(y), compressed as it goes.</summary>
    internal static void WritePng(string path, int width, int height, int colourType, Func<int, byte[]>? row)
    {
        using var file = File.Create(path);
        file.Write(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A });
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        header[8] = 8;
        header[9] = (byte)colourType;
        Chunk(file, "IHDR", header);
        if (row is not null)
        {
            using var compressed = new MemoryStream();
            using (var zlib = new ZLibStream(compressed, CompressionLevel.SmallestSize, leaveOpen: true))
            {
                for (var y = 0; y < height; y++)
                {
                    zlib.WriteByte(0); // filter: none
                    zlib.Write(row(y));
                }
            }
            Chunk(file, "IDAT", compressed.ToArray());
        }
        Chunk(file, "IEND", Array.Empty<byte>());
    }

    private static void Chunk(Stream stream, string type, byte[] data)
    {
        var length = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(length, data.Length);
        stream.Write(length);
        var typed = Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
        stream.Write(typed);
        var crc = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(crc, System.IO.Hashing.Crc32.HashToUInt32(typed));
        stream.Write(crc);
    }

    /// <summary>A real 16×16 JPEG whose frame header (SOF0) is patched to claim <paramref name="width"/>×<paramref name="height"/>.</summary>
    internal static void WriteLyingJpeg(string path, int width, int height)
    {
        using var bitmap = new SKBitmap(16, 16);
        bitmap.Erase(SKColors.Orange);
        using var data = bitmap.Encode(SKEncodedImageFormat.Jpeg, 90);
        var bytes = data.ToArray();
        var sof = Enumerable.Range(0, bytes.Length - 1).First(i => bytes[i] == 0xFF && bytes[i + 1] == 0xC0);
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(sof + 5), (ushort)height);
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(sof + 7), (ushort)width);
        File.WriteAllBytes(path, bytes);
    }

    /// <summary>The three hostile files of the issue, and an ordinary picture, in <paramref name="folder"/>.</summary>
    internal static void WriteHostileFolder(string folder)
    {
        Directory.CreateDirectory(folder);
        WritePng(Path.Combine(folder, "a-header-only.png"), 40000, 40000, 0, null);
        var zeros = new byte[20000];
        WritePng(Path.Combine(folder, "b-bomb.png"), 20000, 20000, 0, _ => zeros); // 400 megapixels of zeros, a few hundred kB
        WriteLyingJpeg(Path.Combine(folder, "c-lying.jpg"), 60000, 60000);
        Ordinary(Path.Combine(folder, "d-fine.png"), SKColors.White);
    }

    /// <summary>A 40×30 picture: 1,200 pixels, over a budget of 1,000.</summary>
    internal static void Ordinary(string path, SKColor colour)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var bitmap = new SKBitmap(40, 30);
        bitmap.Erase(colour);
        using var encoded = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        File.WriteAllBytes(path, encoded.ToArray());
    }

    /// <summary>A finetune folder of two classes, 3 pictures each in train/ and val/.</summary>
    internal static string PictureFolder(string root)
    {
        foreach (var part in new[] { "train", "val" })
        foreach (var (kind, colour) in new[] { ("light", new SKColor(230, 225, 220)), ("dark", new SKColor(20, 25, 30)) })
        for (var i = 0; i < 3; i++)
            Ordinary(Path.Combine(root, part, kind, $"{i}.png"), colour);
        return root;
    }

    private const string FolderVariable = "RESNETGEN_TEST_HOSTILE_FOLDER";

    // ---- the reader itself, in a child process ----

    [Fact]
    public void Hostile_files_are_refused_unread_within_a_second_and_500_MB()
    {
        WriteHostileFolder(_folder);
        Assert.True(new FileInfo(Path.Combine(_folder, "b-bomb.png")).Length < 2_000_000, "the bomb is small on disk");
        Isolated.Run<HostilePictureTests>(nameof(RefuseEachInThisProcess), (FolderVariable, _folder));
    }

    /// <summary>How far this process's peak resident memory rose above where it stood while <paramref name="run"/> ran.</summary>
    internal static long PeakGrowth(Action run)
    {
        GC.Collect();
        ProcessMemory.ResetPeak();
        var baseline = ProcessMemory.Resident();
        run();
        return ProcessMemory.Peak() - baseline;
    }

    internal static void RefuseEachInThisProcess()
    {
        var folder = Environment.GetEnvironmentVariable(FolderVariable)!;
        var grew = PeakGrowth(() =>
        {
            foreach (var (file, says) in new[]
                     {
                         ("a-header-only.png", "declares 40000×40000 pixels (1600 megapixels), over the budget of 89 megapixels"),
                         ("b-bomb.png", "declares 20000×20000 pixels (400 megapixels)"),
                         ("c-lying.jpg", "declares 60000×60000 pixels (3600 megapixels)"),
                     })
            {
                var path = Path.Combine(folder, file);
                var clock = Stopwatch.StartNew();
                var error = Assert.Throws<SampleException>(() => PictureReader.Read(path, 224).Dispose());
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"{file}: refused after {clock.Elapsed.TotalSeconds:0.00} s");
                Assert.StartsWith(path + " " + says, error.Message);
                Assert.Contains("--max-pixels", error.Message);
                // The same files through both preprocessing paths: the Fashion-MNIST one and the ImageNet one.
                Assert.Throws<SampleException>(() => Images.Load(path).Pixels.Dispose());
                Assert.Throws<SampleException>(() => ImageFolder.Input(path, new Preprocessing(224, 0.875, "bilinear", Preprocessing.ImageNetMean, Preprocessing.ImageNetStd)).Dispose());
            }
            using (var fine = PictureReader.Read(Path.Combine(folder, "d-fine.png"), 224)) Assert.Equal((40, 30), (fine.Width, fine.Height));
        });
        Assert.True(grew < 500L << 20, $"peak memory grew by {grew >> 20} MB");
        Console.WriteLine($"peak growth {grew >> 20} MB");
    }

    [Fact]
    public void Large_allowed_pictures_are_read_a_large_jpeg_reduced_and_the_budget_is_the_users()
    {
        // 5000×4000 = 20 megapixels: under PIL's budget, over what is decoded whole (16 Mi pixels). A PNG is read whole.
        var png = Path.Combine(_folder, "large.png");
        var row = Enumerable.Range(0, 5000 * 3).Select(i => (byte)(i % 3 == 0 ? 200 : i % 3 == 1 ? 100 : 50)).ToArray();
        WritePng(png, 5000, 4000, 2, _ => row);
        using (var read = PictureReader.Read(png, 256))
        {
            Assert.Equal((5000, 4000), (read.Width, read.Height));
            Assert.Equal(new SKColor(200, 100, 50), read.GetPixel(2500, 2000));
        }
        var jpeg = Path.Combine(_folder, "large.jpg");
        using (var bitmap = new SKBitmap(6000, 4000))
        {
            bitmap.Erase(new SKColor(30, 160, 220));
            using var data = bitmap.Encode(SKEncodedImageFormat.Jpeg, 90);
            File.WriteAllBytes(jpeg, data.ToArray());
        }
        using (var read = PictureReader.Read(jpeg, 256))
        {
            Assert.Equal((750, 500), (read.Width, read.Height)); // 1/8 scale keeps 500 ≥ 256
            var colour = read.GetPixel(375, 250);
            Assert.True(Math.Abs(colour.Red - 30) <= 3 && Math.Abs(colour.Green - 160) <= 3 && Math.Abs(colour.Blue - 220) <= 3, colour.ToString());
        }
        // Every command reads them (the ImageNet preprocessing: resized to 256, centre-cropped to 224).
        using (var input = ImageFolder.Input(jpeg, new Preprocessing(224, 0.875, "bilinear", Preprocessing.ImageNetMean, Preprocessing.ImageNetStd)))
            Assert.Equal(new long[] { 1, 3, 224, 224 }, input.shape);
        // The budget is the user's: lowered, the same PNG is refused.
        var error = Assert.Throws<SampleException>(() => PictureReader.Read(png, 256, maxPixels: 10_000_000));
        Assert.Contains("over the budget of 10 megapixels", error.Message);
    }

    // ---- the commands ----

    [Fact]
    public void Predict_reports_each_hostile_picture_in_its_row_and_classifies_the_rest()
    {
        var data = SampleAppTests.TinyDataIn(_folder);
        var output = Path.Combine(_folder, "out");
        var (trainCode, trainText) = Run("train", "--data", data, "--epochs", "1", "--limit", "256", "--batch-size", "64", "--output", output);
        Assert.True(trainCode == 0, trainText);
        WriteHostileFolder(Path.Combine(_folder, "pictures"));
        Isolated.Run<HostilePictureTests>(nameof(PredictInThisProcess), (FolderVariable, _folder));
    }

    internal static void PredictInThisProcess()
    {
        var folder = Environment.GetEnvironmentVariable(FolderVariable)!;
        var clock = new Stopwatch();
        var (code, text) = (0, "");
        var grew = PeakGrowth(() =>
        {
            clock.Start();
            (code, text) = Run("predict", Path.Combine(folder, "pictures"), "--output", Path.Combine(folder, "out"));
        });
        Assert.Equal(1, code); // some pictures could not be read, as for any unreadable picture
        string Row(string name) => text.Split('\n').Single(l => l.Contains(name, StringComparison.Ordinal) && l.Contains('│'));
        Assert.Contains("unreadable: declares 40000×40000 pixels", Row("a-header-only.png"));
        Assert.Contains("unreadable: declares 20000×20000 pixels", Row("b-bomb.png"));
        Assert.Contains("unreadable: declares 60000×60000 pixels", Row("c-lying.jpg"));
        Assert.Matches(@"d-fine\.png.*│ [A-Za-z/ -]+ \d+\.\d%", Row("d-fine.png"));
        Assert.Contains("error: 3 of 4 pictures could not be read", text);
        Assert.DoesNotContain("a bug in the sample", text);
        Assert.True(grew < 500L << 20, $"peak memory grew by {grew >> 20} MB");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"predict took {clock.Elapsed.TotalSeconds:0.0} s");
    }

    [Fact]
    public void Finetune_lists_a_bomb_and_stops_or_trains_on_the_rest()
    {
        var images = PictureFolder(Path.Combine(_folder, "images"));
        var zeros = new byte[20000];
        var bomb = Path.Combine(images, "train", "dark", "z-bomb.png");
        WritePng(bomb, 20000, 20000, 0, _ => zeros);
        var output = Path.Combine(_folder, "finetune");
        string[] Args(params string[] more) => new[] { "finetune", "--images", images, "--size", "32", "--batch-size", "4", "--epochs", "1", "--output", output }.Concat(more).ToArray();

        var (code, text) = Run(Args());
        AssertOneLineError((code, text), "1 of 13 pictures could not be read (listed above). Remove or replace them, or pass --skip-unreadable to train on the rest; nothing was trained.");
        Assert.Contains($"  {bomb} declares 20000×20000 pixels (400 megapixels), over the budget of 89 megapixels", text);
        Assert.False(Directory.Exists(output)); // nothing written

        (code, text) = Run(Args("--skip-unreadable"));
        Assert.True(code == 0, text);
        Assert.Contains($"  {bomb} declares 20000×20000 pixels", text);
        Assert.Contains("--skip-unreadable: training on the other 6 and validating on 6.", text);
        Assert.True(File.Exists(Path.Combine(output, SampleApp.FineTunedCheckpoint)));
    }
}
