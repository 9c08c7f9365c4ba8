using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.IO.Compression;
using System.Linq;
using TorchSharp;

namespace ResNetGen.Sample;

/// <summary>Fashion-MNIST in memory: 28×28 grayscale images as bytes, and labels.</summary>
public sealed class FashionMnist : ITrainingData, IDisposable
{
    public static readonly string[] Classes =
        { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot" };

    /// <summary>Where Debian's dataset-fashion-mnist package puts the files.</summary>
    public const string DebianFolder = "/usr/share/datasets/fashion-mnist";

    public const float Mean = 0.2860f, Std = 0.3530f;

    private FashionMnist(torch.Tensor trainImages, torch.Tensor trainLabels, torch.Tensor testImages, torch.Tensor testLabels, string source)
    {
        TrainImages = trainImages;
        TrainLabels = trainLabels;
        TestImages = testImages;
        TestLabels = testLabels;
        Source = source;
    }

    /// <summary>[N, 1, 28, 28] bytes.</summary>
    public torch.Tensor TrainImages { get; }
    public torch.Tensor TrainLabels { get; }
    public torch.Tensor TestImages { get; }
    public torch.Tensor TestLabels { get; }

    /// <summary>Where the data came from, for the user.</summary>
    public string Source { get; }

    public long TrainCount => TrainLabels.shape[0];
    public long TestCount => TestLabels.shape[0];

    IReadOnlyList<string> ITrainingData.Classes => Classes;

    public int TestBatchSize => 500;

    /// <summary>The images at <paramref name="indices"/>, padded by 2 and cropped back at a random offset, flipped at random, normalised.</summary>
    /// <inheritdoc />
    public ResNetGen.Training.AutoAugment? Augmentation { get; set; }

    public (torch.Tensor Images, torch.Tensor Labels) TrainBatch(torch.Tensor indices, torch.Generator generator, torch.Device device)
    {
        using var bytes = TrainImages.index_select(0, indices);
        using var augmented = Augmentation is { } policy ? policy.Apply(bytes, generator) : bytes.alias();
        return (Augment(Normalize(augmented, device), generator), TrainLabels.index_select(0, indices).to(device));
    }

    public (torch.Tensor Images, torch.Tensor Labels) TestBatch(long start, long count, torch.Device device) =>
        (Normalize(TestImages.narrow(0, start, count), device), TestLabels.narrow(0, start, count).to(device));

    /// <summary>Pads by 2 and crops back at a random offset (one per quarter batch), then flips a random half.</summary>
    private static torch.Tensor Augment(torch.Tensor images, torch.Generator generator)
    {
        var n = images.shape[0];
        var padded = torch.nn.functional.pad(images, new long[] { 2, 2, 2, 2 });
        var parts = new List<torch.Tensor>();
        var quarter = Math.Max(1, (n + 3) / 4);
        for (long start = 0; start < n; start += quarter)
        {
            var length = Math.Min(quarter, n - start);
            var offsets = torch.randint(0, 5, new long[] { 2 }, generator: generator).data<long>().ToArray();
            parts.Add(padded.narrow(0, start, length).narrow(2, offsets[0], 28).narrow(3, offsets[1], 28));
        }
        var cropped = torch.cat(parts, 0);
        using var half = 0.5.ToScalar();
        var flip = torch.rand(new long[] { n, 1, 1, 1 }, generator: generator).to(images.device).lt(half);
        return torch.where(flip, cropped.flip(3), cropped);
    }

    /// <summary>
    /// The data in <paramref name="folder"/> if given (an error if it is not there), else Debian's copy if installed,
    /// else the subset embedded in this program.
    /// </summary>
    /// <param name="folder">The folder, or null.</param>
    /// <param name="maxPixels">The most pixels an image file may declare, all its 28×28 images together (the picture budget, <c>--max-pixels</c>); a larger one is refused before its body is read.</param>
    public static FashionMnist Load(string? folder, long maxPixels = PictureReader.DefaultMaxPixels)
    {
        if (folder is not null)
        {
            if (!Directory.Exists(folder)) throw new SampleException($"--data {folder}: no such folder. Point --data at a folder with the four Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, …).");
            return FromFolder(folder, $"Fashion-MNIST from {folder}", maxPixels);
        }
        if (Directory.Exists(DebianFolder) && File.Exists(Path.Combine(DebianFolder, "train-images-idx3-ubyte.gz")))
            return FromFolder(DebianFolder, $"full Fashion-MNIST from {DebianFolder} (Debian's dataset-fashion-mnist)", maxPixels);
        return Embedded(maxPixels);
    }

    private static FashionMnist FromFolder(string folder, string source, long maxPixels)
    {
        string Find(string stem)
        {
            foreach (var name in new[] { stem + ".gz", stem })
            {
                var path = Path.Combine(folder, name);
                if (File.Exists(path)) return path;
            }
            throw new SampleException($"{Path.Combine(folder, stem)}.gz is missing. Fashion-MNIST needs train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (.gz or not); install dataset-fashion-mnist or download them from the Fashion-MNIST repository.");
        }
        return Create(
            File.OpenRead(Find("train-images-idx3-ubyte")), Find("train-images-idx3-ubyte"),
            File.OpenRead(Find("train-labels-idx1-ubyte")), Find("train-labels-idx1-ubyte"),
            File.OpenRead(Find("t10k-images-idx3-ubyte")), Find("t10k-images-idx3-ubyte"),
            File.OpenRead(Find("t10k-labels-idx1-ubyte")), Find("t10k-labels-idx1-ubyte"),
            source, maxPixels);
    }

    private static FashionMnist Embedded(long maxPixels)
    {
        var assembly = typeof(FashionMnist).Assembly;
        Stream Open(string name) => assembly.GetManifestResourceStream("ResNetGen.Sample.Data." + name)
                                    ?? throw new SampleException($"the embedded subset lacks {name}; rebuild the sample");
        var data = Create(
            Open("train-images-idx3-ubyte.gz"), "embedded train-images-idx3-ubyte.gz",
            Open("train-labels-idx1-ubyte.gz"), "embedded train-labels-idx1-ubyte.gz",
            Open("t10k-images-idx3-ubyte.gz"), "embedded t10k-images-idx3-ubyte.gz",
            Open("t10k-labels-idx1-ubyte.gz"), "embedded t10k-labels-idx1-ubyte.gz",
            "", maxPixels);
        return new FashionMnist(data.TrainImages, data.TrainLabels, data.TestImages, data.TestLabels,
            $"the Fashion-MNIST subset embedded in the sample ({data.TrainCount:N0} train / {data.TestCount:N0} test images); install dataset-fashion-mnist or pass --data DIR for the full 60,000 / 10,000");
    }

    private static FashionMnist Create(Stream trainImages, string trainImagesName, Stream trainLabels, string trainLabelsName,
        Stream testImages, string testImagesName, Stream testLabels, string testLabelsName, string source, long maxPixels)
    {
        var (trainX, n1) = ReadImages(trainImages, trainImagesName, maxPixels);
        var trainY = ReadLabels(trainLabels, trainLabelsName, n1, trainImagesName);
        var (testX, n3) = ReadImages(testImages, testImagesName, maxPixels);
        var testY = ReadLabels(testLabels, testLabelsName, n3, testImagesName);
        return new FashionMnist(
            torch.tensor(trainX, new long[] { n1, 1, 28, 28 }), torch.tensor(trainY.Select(b => (long)b).ToArray()),
            torch.tensor(testX, new long[] { n3, 1, 28, 28 }), torch.tensor(testY.Select(b => (long)b).ToArray()),
            source);
    }

    /// <summary>
    /// The file's bytes as a stream, decompressed as it is read when it is gzip: nothing is read ahead, so a header can be
    /// checked before the body it declares is decompressed (a small .gz can declare gigabytes).
    /// </summary>
    private static Stream Decoded(Stream stream)
    {
        if (!stream.CanSeek)
        {
            var copy = new MemoryStream();
            using (stream) stream.CopyTo(copy);
            copy.Position = 0;
            stream = copy;
        }
        var head = new byte[2];
        var got = stream.ReadAtLeast(head, 2, throwOnEndOfStream: false);
        stream.Position = 0;
        return got == 2 && head[0] == 0x1f && head[1] == 0x8b ? new GZipStream(stream, CompressionMode.Decompress) : stream;
    }

    /// <summary>Reads into <paramref name="buffer"/> as far as the file goes (the count read); a damaged gzip stream is the file's problem in one line.</summary>
    private static int Fill(Stream data, byte[] buffer, string name)
    {
        try
        {
            return data.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
        }
        catch (InvalidDataException e)
        {
            throw new SampleException($"{name} is corrupt ({e.Message}). Download it again, or point --data at a good copy.");
        }
    }

    /// <summary>Exactly <paramref name="count"/> bytes of <paramref name="data"/>, or the file's problem in one line.</summary>
    private static byte[] ReadExactly(Stream data, long count, string name, string what, long before = 0)
    {
        var bytes = new byte[count];
        var got = Fill(data, bytes, name);
        if (got < bytes.Length)
            throw new SampleException($"{name} is truncated: {what} need {before + count:N0} bytes, the file has {before + got:N0}. Download it again.");
        return bytes;
    }

    /// <summary>Refuses bytes after what the header declared (another file appended, or a wrong count).</summary>
    private static void ExpectEnd(Stream data, string name, string what)
    {
        if (Fill(data, new byte[1], name) > 0)
            throw new SampleException($"{name} is corrupt: it has more bytes than its {what} need. Download it again, or point --data at a good copy.");
    }

    /// <summary>
    /// An IDX image file, its header first: the magic number, 28×28, and the declared count against the picture budget
    /// (<paramref name="maxPixels"/>, all its images together) before anything else is decompressed or allocated.
    /// </summary>
    private static (byte[] Pixels, int Count) ReadImages(Stream stream, string name, long maxPixels)
    {
        using var data = Decoded(stream);
        var header = new byte[16];
        if (Fill(data, header, name) < 16 || BinaryPrimitives.ReadInt32BigEndian(header) != 2051)
            throw new SampleException($"{name} is not an IDX image file (its magic number is not 2051). Download it again, or point --data at a good copy.");
        var count = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(4));
        var rows = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(8));
        var cols = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(12));
        if (rows != 28 || cols != 28) throw new SampleException($"{name} holds {rows}×{cols} images; Fashion-MNIST's are 28×28.");
        if (count <= 0) throw new SampleException($"{name} declares {count} images: it is corrupt. Download it again, or point --data at a good copy.");
        var pixels = (long)count * 784;
        if (pixels > maxPixels)
            throw new SampleException($"{name} declares {count:N0} images of 28×28 ({PictureReader.Megapixels(pixels)}), over the budget of {PictureReader.Megapixels(maxPixels)}, " +
                                      "so it was not read. If you trust the file, raise the budget with --max-pixels");
        var body = ReadExactly(data, pixels, name, $"{count:N0} images", before: 16);
        ExpectEnd(data, name, $"{count:N0} images");
        return (body, count);
    }

    /// <summary>An IDX label file, which must hold one label 0–9 for each of <paramref name="images"/> images, checked before its body is read.</summary>
    private static byte[] ReadLabels(Stream stream, string name, int images, string imagesName)
    {
        using var data = Decoded(stream);
        var header = ReadExactly(data, 8, name, "an IDX label file's header");
        if (BinaryPrimitives.ReadInt32BigEndian(header) != 2049)
            throw new SampleException($"{name} is not an IDX label file (its magic number is not 2049). Download it again, or point --data at a good copy.");
        var count = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(4));
        if (count != images) throw new SampleException($"{imagesName} has {images} images but {name} has {count} labels: the files do not belong together.");
        var labels = ReadExactly(data, count, name, $"{count:N0} labels", before: 8);
        ExpectEnd(data, name, $"{count:N0} labels");
        if (labels.Any(l => l > 9)) throw new SampleException($"{name} has labels outside 0–9: it is not Fashion-MNIST.");
        return labels;
    }

    /// <summary>Bytes [N, 1, 28, 28] to the normalised floats the network trains on.</summary>
    public static torch.Tensor Normalize(torch.Tensor bytes, torch.Device device)
    {
        // Scalars held in locals until the ops are done (a temporary Scalar can be freed while libtorch reads it).
        using var byteRange = 255f.ToScalar();
        using var mean = Mean.ToScalar();
        using var std = Std.ToScalar();
        var floats = bytes.to(torch.float32, device);
        return floats.div_(byteRange).sub_(mean).div_(std); // in place on the fresh copy, which is returned
    }

    public void Dispose()
    {
        TrainImages.Dispose();
        TrainLabels.Dispose();
        TestImages.Dispose();
        TestLabels.Dispose();
    }
}
