using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using SkiaSharp;
using TorchSharp;

namespace ResNetGen.Sample;

/// <summary>
/// A folder of pictures laid out as torchvision's ImageFolder reads it, split in two: <c>DIR/train/&lt;class&gt;/</c> and
/// <c>DIR/val/&lt;class&gt;/</c> (PNG or JPEG, any size, grayscale or colour, sub-folders included). Classes are the train
/// folder's sub-folders in ordinal order. Pictures are prepared as the <see cref="Preprocessing"/> says: resized so that
/// their shorter side is <see cref="ResizeTo"/> (size / crop fraction, as torchvision's 256 for 224) with its
/// interpolation and cropped to <see cref="Size"/> (at random and flipped at random for training, in the centre for
/// validation), then normalised with its mean and standard deviation.
/// </summary>
public sealed class ImageFolder : ITrainingData
{

    /// <summary>Larger pictures are refused rather than decoded (a 64-megapixel RGBA bitmap is 256 MB).</summary>
    public const long MaxPixels = 64L << 20;

    private readonly ConcurrentDictionary<string, Picture> _cache = new(StringComparer.Ordinal);
    private readonly long _cacheBudget;
    private long _cached;

    private ImageFolder(string root, Preprocessing preprocessing, string[] classes, (string, int)[] train, (string, int)[] val, List<string> warnings, long cacheBudget)
    {
        Root = root;
        Preprocessing = preprocessing;
        Classes = classes;
        TrainPictures = train;
        ValPictures = val;
        Warnings = warnings;
        _cacheBudget = cacheBudget;
    }

    public string Root { get; }

    /// <summary>How a picture becomes an input.</summary>
    public Preprocessing Preprocessing { get; }

    /// <summary>The square side the network sees.</summary>
    public int Size => Preprocessing.Size;

    /// <summary>The shorter side pictures are resized to before cropping.</summary>
    public int ResizeTo => Preprocessing.ResizeTo;

    public IReadOnlyList<string> Classes { get; }
    public IReadOnlyList<(string Path, int Label)> TrainPictures { get; }
    public IReadOnlyList<(string Path, int Label)> ValPictures { get; }

    /// <summary>What is odd but not wrong (a class without validation pictures).</summary>
    public IReadOnlyList<string> Warnings { get; }

    public long TrainCount => TrainPictures.Count;
    public long TestCount => ValPictures.Count;
    public int TestBatchSize => 64;

    /// <summary>Reads the layout of <paramref name="root"/> (no picture decoded yet); every problem is one line.</summary>
    /// <param name="cacheBudget">Bytes of decoded, resized pictures kept in memory between epochs; the rest are decoded again each time.</param>
    public static ImageFolder Open(string root, Preprocessing preprocessing, long cacheBudget = 1L << 30)
    {
        if (!Directory.Exists(root)) throw new SampleException($"--images {root}: no such folder. Lay your pictures out as {root}/train/<class>/ and {root}/val/<class>/.");
        var trainRoot = Path.Combine(root, "train");
        var valRoot = Path.Combine(root, "val");
        foreach (var part in new[] { trainRoot, valRoot })
            if (!Directory.Exists(part))
                throw new SampleException($"{root} has no {Path.GetFileName(part)} folder: lay the pictures out as {trainRoot}/<class>/ and {valRoot}/<class>/.");

        var classes = ClassFolders(trainRoot);
        if (classes.Length == 0)
            throw new SampleException($"{trainRoot} has no class folders: put each class's pictures in a folder of its own, {trainRoot}/<class>/.");
        if (classes.Length == 1)
            throw new SampleException($"{trainRoot} has one class folder ({classes[0]}); a classifier needs at least two classes.");
        var train = new List<(string, int)>();
        for (var label = 0; label < classes.Length; label++)
        {
            var folder = Path.Combine(trainRoot, classes[label]);
            var pictures = Pictures(folder);
            if (pictures.Count == 0)
                throw new SampleException($"{folder} has no PNG or JPEG pictures{OtherFiles(folder)}; every class needs training pictures (or remove the folder).");
            train.AddRange(pictures.Select(p => (p, label)));
        }

        var warnings = new List<string>();
        var valClasses = ClassFolders(valRoot);
        var stranger = valClasses.FirstOrDefault(c => !classes.Contains(c, StringComparer.Ordinal));
        if (stranger is not null)
            throw new SampleException($"{Path.Combine(valRoot, stranger)} is not a class of {trainRoot} (its classes: {string.Join(", ", classes)}); the two folders need the same class names.");
        var val = new List<(string, int)>();
        for (var label = 0; label < classes.Length; label++)
        {
            var folder = Path.Combine(valRoot, classes[label]);
            var pictures = Directory.Exists(folder) ? Pictures(folder) : new List<string>();
            if (pictures.Count == 0) warnings.Add($"{folder}: no validation pictures, so class {classes[label]} is trained but its accuracy is not measured.");
            val.AddRange(pictures.Select(p => (p, label)));
        }
        if (val.Count == 0)
            throw new SampleException($"{valRoot} has no PNG or JPEG pictures in its class folders; validation needs some ({valRoot}/<class>/…).");
        return new ImageFolder(root, preprocessing, classes, train.ToArray(), val.ToArray(), warnings, cacheBudget);
    }

    private static string[] ClassFolders(string folder) =>
        Directory.EnumerateDirectories(folder).Select(Path.GetFileName).Where(n => !n!.StartsWith('.')).Select(n => n!)
            .OrderBy(n => n, StringComparer.Ordinal).ToArray();

    /// <summary>The PNG and JPEG files under <paramref name="folder"/> (sub-folders included, hidden ones not), in ordinal order.</summary>
    public static List<string> Pictures(string folder) =>
        Directory.EnumerateFiles(folder, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.Hidden })
            .Where(IsPicture).OrderBy(f => f, StringComparer.Ordinal).ToList();

    public static bool IsPicture(string path) =>
        Path.GetExtension(path).ToLowerInvariant() is ".png" or ".jpg" or ".jpeg";

    private static string OtherFiles(string folder)
    {
        var others = Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Count();
        return others == 0 ? "" : $" (it has {others} other file{(others == 1 ? "" : "s")})";
    }

    /// <summary>
    /// Decodes every picture once, in parallel, keeping what the cache budget allows; reports progress as (done,
    /// total). One unreadable picture (or more) is one line naming it: training on a folder that is not what it seems
    /// is refused rather than silently thinned.
    /// </summary>
    public void Check(Action<int, int> progress, CancellationToken cancel)
    {
        var all = TrainPictures.Concat(ValPictures).Select(p => p.Path).ToArray();
        var failures = new ConcurrentBag<(string Path, string Why)>();
        var done = 0;
        Parallel.ForEach(all, new ParallelOptions { CancellationToken = cancel, MaxDegreeOfParallelism = Environment.ProcessorCount }, path =>
        {
            try
            {
                Get(path);
            }
            catch (SampleException e)
            {
                failures.Add((path, e.Message));
            }
            progress(Interlocked.Increment(ref done), all.Length);
        });
        if (failures.IsEmpty) return;
        var sorted = failures.OrderBy(f => f.Path, StringComparer.Ordinal).ToList();
        var more = sorted.Count > 1 ? $" {sorted.Count - 1} more unreadable: {string.Join(", ", sorted.Skip(1).Take(3).Select(f => f.Path))}{(sorted.Count > 4 ? ", …" : "")}." : "";
        throw new SampleException($"{sorted[0].Why}.{more} Remove or replace {(sorted.Count == 1 ? "it" : "them")}; nothing was trained.");
    }

    public (torch.Tensor Images, torch.Tensor Labels) TrainBatch(torch.Tensor indices, torch.Generator generator, torch.Device device)
    {
        var index = indices.data<long>().ToArray();
        var chosen = index.Select(i => TrainPictures[(int)i]).ToArray();
        using var random = torch.rand(new long[] { index.Length, 3 }, dtype: torch.float64, generator: generator); // x, y, flip
        var u = random.data<double>().ToArray();
        return Batch(chosen, device, (picture, i) =>
            (Offset(u[3 * i], picture.Width - Size), Offset(u[3 * i + 1], picture.Height - Size), u[3 * i + 2] < 0.5));
    }

    public (torch.Tensor Images, torch.Tensor Labels) TestBatch(long start, long count, torch.Device device) =>
        Batch(ValPictures.Skip((int)start).Take((int)count).ToArray(), device, (picture, _) => Centre(picture, Size));

    private static int Offset(double u, int room) => Math.Min(room, (int)(u * (room + 1)));

    private static (int X, int Y, bool Flip) Centre(Picture picture, int size) =>
        ((int)Math.Round((picture.Width - size) / 2.0), (int)Math.Round((picture.Height - size) / 2.0), false);

    private (torch.Tensor, torch.Tensor) Batch((string Path, int Label)[] items, torch.Device device, Func<Picture, int, (int X, int Y, bool Flip)> crop)
    {
        var plane = Size * Size;
        var pixels = new float[items.Length * 3 * plane];
        Parallel.For(0, items.Length, i =>
        {
            var picture = Get(items[i].Path);
            var (x, y, flip) = crop(picture, i);
            picture.CropInto(pixels.AsSpan(i * 3 * plane, 3 * plane), x, y, Size, flip, Preprocessing);
        });
        var images = torch.tensor(pixels, new long[] { items.Length, 3, Size, Size });
        var labels = torch.tensor(items.Select(p => (long)p.Label).ToArray());
        return device.type == DeviceType.CPU ? (images, labels) : (images.to(device), labels.to(device));
    }

    private Picture Get(string path)
    {
        if (_cache.TryGetValue(path, out var cached)) return cached;
        var picture = Picture.Decode(path, ResizeTo, Preprocessing.Interpolation);
        if (Interlocked.Add(ref _cached, picture.Bytes) <= _cacheBudget) _cache.TryAdd(path, picture);
        else Interlocked.Add(ref _cached, -picture.Bytes);
        return picture;
    }

    /// <summary>One picture as <paramref name="preprocessing"/> makes it for prediction: resized, centre-cropped, normalised, [1, 3, size, size].</summary>
    public static torch.Tensor Input(string path, Preprocessing preprocessing)
    {
        var size = preprocessing.Size;
        var picture = Picture.Decode(path, preprocessing.ResizeTo, preprocessing.Interpolation);
        var pixels = new float[3 * size * size];
        var (x, y, _) = Centre(picture, size);
        picture.CropInto(pixels, x, y, size, false, preprocessing);
        return torch.tensor(pixels, new long[] { 1, 3, size, size });
    }

    /// <summary>A decoded picture, resized so that its shorter side is the folder's <see cref="ResizeTo"/>: RGB bytes, planar.</summary>
    private sealed class Picture
    {
        private readonly byte[] _rgb;

        private Picture(byte[] rgb, int width, int height)
        {
            _rgb = rgb;
            Width = width;
            Height = height;
        }

        public int Width { get; }
        public int Height { get; }
        public long Bytes => _rgb.Length;

        public static Picture Decode(string path, int shorter, string interpolation)
        {
            if (!File.Exists(path)) throw new SampleException($"{path}: no such file");
            using var codec = SKCodec.Create(path, out var status);
            if (codec is null) throw new SampleException($"{path} is not a PNG or JPEG picture that can be decoded ({status})");
            var (width, height) = (codec.Info.Width, codec.Info.Height);
            if (width <= 0 || height <= 0 || (long)width * height > MaxPixels)
                throw new SampleException($"{path} is {width}×{height} pixels, beyond the {MaxPixels >> 20} megapixels this sample decodes");
            var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
            using var full = new SKBitmap(info);
            var result = codec.GetPixels(info, full.GetPixels());
            if (result != SKCodecResult.Success)
                throw new SampleException($"{path} is not a PNG or JPEG picture that can be decoded ({(result == SKCodecResult.IncompleteInput ? "truncated" : result.ToString())})");
            var scale = (double)shorter / Math.Min(width, height);
            var (w, h) = (Math.Max(shorter, (int)Math.Round(width * scale)), Math.Max(shorter, (int)Math.Round(height * scale)));
            using var resized = full.Resize(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Unpremul), Sampling(interpolation))
                                ?? throw new SampleException($"{path} could not be resized to {w}×{h}");
            var rgba = resized.GetPixelSpan();
            var rgb = new byte[3 * w * h];
            var plane = w * h;
            for (var i = 0; i < plane; i++)
            {
                var alpha = rgba[4 * i + 3] / 255.0;
                for (var c = 0; c < 3; c++) // transparent pixels are white paper
                    rgb[c * plane + i] = (byte)Math.Clamp(Math.Round(rgba[4 * i + c] * alpha + 255 * (1 - alpha)), 0, 255);
            }
            return new Picture(rgb, w, h);
        }

        /// <summary>PIL's bilinear (with mipmaps, so a large shrink averages rather than skips), bicubic (Catmull-Rom) or Mitchell's cubic.</summary>
        private static SKSamplingOptions Sampling(string interpolation) => interpolation switch
        {
            "bilinear" => new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.Linear),
            "bicubic" => new SKSamplingOptions(SKCubicResampler.CatmullRom),
            _ => new SKSamplingOptions(SKCubicResampler.Mitchell),
        };

        /// <summary>Writes the <paramref name="size"/>² square at (<paramref name="x"/>, <paramref name="y"/>), mirrored if asked, normalised as <paramref name="preprocessing"/> says, into <paramref name="target"/> [3, size, size].</summary>
        public void CropInto(Span<float> target, int x, int y, int size, bool flip, Preprocessing preprocessing)
        {
            var plane = Width * Height;
            for (var c = 0; c < 3; c++)
            {
                var (mean, std) = (preprocessing.Mean[c], preprocessing.Std[c]);
                for (var row = 0; row < size; row++)
                {
                    var source = c * plane + (y + row) * Width + x;
                    var line = target.Slice((c * size + row) * size, size);
                    for (var col = 0; col < size; col++)
                        line[col] = (_rgb[source + (flip ? size - 1 - col : col)] / 255f - mean) / std;
                }
            }
        }
    }
}
