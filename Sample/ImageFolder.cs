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

    private readonly ConcurrentDictionary<string, Picture> _cache = new(StringComparer.Ordinal);
    private readonly long _cacheBudget;
    private long _cached;

    private readonly long _maxPixels;

    private ImageFolder(string root, Preprocessing preprocessing, string[] classes, (string, int)[] train, (string, int)[] val, List<string> warnings, long cacheBudget,
        long maxPixels)
    {
        _maxPixels = maxPixels;
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
    public IReadOnlyList<(string Path, int Label)> TrainPictures { get; private set; }
    public IReadOnlyList<(string Path, int Label)> ValPictures { get; private set; }

    /// <summary>What is odd but not wrong (a class without validation pictures).</summary>
    public IReadOnlyList<string> Warnings { get; }

    public long TrainCount => TrainPictures.Count;
    public long TestCount => ValPictures.Count;
    public int TestBatchSize => 64;

    /// <summary>Reads the layout of <paramref name="root"/> (no picture decoded yet); every problem is one line.</summary>
    /// <param name="cacheBudget">Bytes of decoded, resized pictures kept in memory between epochs; the rest are decoded again each time.</param>
    /// <param name="maxPixels">The most pixels a picture may declare (<see cref="PictureReader.DefaultMaxPixels"/>); larger ones are refused unread.</param>
    public static ImageFolder Open(string root, Preprocessing preprocessing, long cacheBudget = 1L << 30, long maxPixels = PictureReader.DefaultMaxPixels)
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
        return new ImageFolder(root, preprocessing, classes, train.ToArray(), val.ToArray(), warnings, cacheBudget, maxPixels);
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
    /// Decodes every picture once, in parallel, keeping what the cache budget allows; reports progress as (done, total).
    /// Returns every picture that could not be read, with the reason, in path order. With <paramref name="skipUnreadable"/>
    /// those are left out of training and validation (a class left without training pictures, or no validation picture
    /// left at all, is still an error); without it, any unreadable picture is an error after the report, before training.
    /// </summary>
    public IReadOnlyList<(string Path, string Why)> Check(Action<int, int> progress, CancellationToken cancel, bool skipUnreadable = false)
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
        var sorted = failures.OrderBy(f => f.Path, StringComparer.Ordinal).ToList();
        if (sorted.Count == 0 || !skipUnreadable) return sorted;
        var refused = sorted.Select(f => f.Path).ToHashSet(StringComparer.Ordinal);
        TrainPictures = TrainPictures.Where(p => !refused.Contains(p.Path)).ToArray();
        ValPictures = ValPictures.Where(p => !refused.Contains(p.Path)).ToArray();
        var empty = Enumerable.Range(0, Classes.Count).FirstOrDefault(label => TrainPictures.All(p => p.Label != label), -1);
        if (empty >= 0)
            throw new SampleException($"every training picture of class {Classes[empty]} is unreadable (listed above); add readable ones, or remove the class folder. Nothing was trained.");
        if (ValPictures.Count == 0)
            throw new SampleException("every validation picture is unreadable (listed above); validation needs some. Nothing was trained.");
        return sorted;
    }

    /// <inheritdoc />
    public ResNetGen.Training.AutoAugment? Augmentation { get; set; }

    public (torch.Tensor Images, torch.Tensor Labels) TrainBatch(torch.Tensor indices, torch.Generator generator, torch.Device device)
    {
        var index = indices.data<long>().ToArray();
        var chosen = index.Select(i => TrainPictures[(int)i]).ToArray();
        using var random = torch.rand(new long[] { index.Length, 3 }, dtype: torch.float64, generator: generator); // x, y, flip
        var u = random.data<double>().ToArray();
        return Batch(chosen, device, (picture, i) =>
            (Offset(u[3 * i], picture.Width - Size), Offset(u[3 * i + 1], picture.Height - Size), u[3 * i + 2] < 0.5), Augmentation, generator);
    }

    public (torch.Tensor Images, torch.Tensor Labels) TestBatch(long start, long count, torch.Device device) =>
        Batch(ValPictures.Skip((int)start).Take((int)count).ToArray(), device, (picture, _) => Centre(picture, Size));

    private static int Offset(double u, int room) => Math.Min(room, (int)(u * (room + 1)));

    private static (int X, int Y, bool Flip) Centre(Picture picture, int size) =>
        ((int)Math.Round((picture.Width - size) / 2.0), (int)Math.Round((picture.Height - size) / 2.0), false);

    private (torch.Tensor, torch.Tensor) Batch((string Path, int Label)[] items, torch.Device device, Func<Picture, int, (int X, int Y, bool Flip)> crop,
        ResNetGen.Training.AutoAugment? augmentation = null, torch.Generator? generator = null)
    {
        var plane = Size * Size;
        var pixels = new float[items.Length * 3 * plane];
        // With an automatic augmentation the crops are taken as bytes, augmented as torchvision does after its crop and
        // flip, then normalised as CropInto would have.
        var bytes = augmentation is null ? null : new byte[items.Length * 3 * plane];
        try
        {
            Parallel.For(0, items.Length, i =>
            {
                var picture = Get(items[i].Path);
                var (x, y, flip) = crop(picture, i);
                if (bytes is null) picture.CropInto(pixels.AsSpan(i * 3 * plane, 3 * plane), x, y, Size, flip, Preprocessing);
                else picture.CropBytesInto(bytes.AsSpan(i * 3 * plane, 3 * plane), x, y, Size, flip);
            });
        }
        catch (AggregateException e) when (e.InnerExceptions.OfType<SampleException>().Any())
        {
            // A picture that cannot be read (not checked first, as eval --images reads its pictures): that picture's one line.
            throw e.InnerExceptions.OfType<SampleException>().OrderBy(x => x.Message, StringComparer.Ordinal).First();
        }
        if (bytes is not null)
        {
            using var crops = torch.tensor(bytes, new long[] { items.Length, 3, Size, Size });
            using var augmented = augmentation!.Apply(crops, generator ?? throw new ArgumentNullException(nameof(generator)));
            var values = augmented.data<byte>().ToArray();
            for (var i = 0; i < items.Length; i++)
                new Picture(values.AsSpan(i * 3 * plane, 3 * plane).ToArray(), Size, Size).CropInto(pixels.AsSpan(i * 3 * plane, 3 * plane), 0, 0, Size, false, Preprocessing);
        }
        var images = torch.tensor(pixels, new long[] { items.Length, 3, Size, Size });
        var labels = torch.tensor(items.Select(p => (long)p.Label).ToArray());
        return device.type == DeviceType.CPU ? (images, labels) : (images.to(device), labels.to(device));
    }

    private Picture Get(string path)
    {
        if (_cache.TryGetValue(path, out var cached)) return cached;
        var picture = Picture.Decode(path, ResizeTo, Preprocessing.Interpolation, _maxPixels);
        if (Interlocked.Add(ref _cached, picture.Bytes) <= _cacheBudget) _cache.TryAdd(path, picture);
        else Interlocked.Add(ref _cached, -picture.Bytes);
        return picture;
    }

    /// <summary>One picture as <paramref name="preprocessing"/> makes it for prediction: resized, centre-cropped, normalised, [1, 3, size, size].</summary>
    public static torch.Tensor Input(string path, Preprocessing preprocessing, long maxPixels = PictureReader.DefaultMaxPixels)
    {
        var size = preprocessing.Size;
        var picture = Picture.Decode(path, preprocessing.ResizeTo, preprocessing.Interpolation, maxPixels);
        var pixels = new float[3 * size * size];
        var (x, y, _) = Centre(picture, size);
        picture.CropInto(pixels, x, y, size, false, preprocessing);
        return torch.tensor(pixels, new long[] { 1, 3, size, size });
    }

    /// <summary>A decoded picture, resized so that its shorter side is the folder's <see cref="ResizeTo"/>: RGB bytes, planar.</summary>
    private sealed class Picture
    {
        private readonly byte[] _rgb;

        internal Picture(byte[] rgb, int width, int height)
        {
            _rgb = rgb;
            Width = width;
            Height = height;
        }

        public int Width { get; }
        public int Height { get; }
        public long Bytes => _rgb.Length;

        public static Picture Decode(string path, int shorter, string interpolation, long maxPixels)
        {
            using var full = PictureReader.Read(path, shorter, maxPixels);
            var (width, height) = (full.Width, full.Height);
            var (w, h) = ResizedSize(width, height, shorter);
            if (PilResample.Supports(interpolation))
            {
                // As torchvision's and timm's eval transforms: the RGB picture resized by PIL's own filter.
                var planes = Planes(full.GetPixelSpan(), width * height);
                return new Picture((w, h) == (width, height) ? planes : PilResample.Resize(planes, 3, width, height, w, h, interpolation), w, h);
            }
            using var resized = full.Resize(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Unpremul), Sampling(interpolation))
                                ?? throw new SampleException($"{path} could not be resized to {w}×{h}");
            return new Picture(Planes(resized.GetPixelSpan(), w * h), w, h);
        }

        /// <summary>
        /// torchvision's Resize(size) of a <paramref name="width"/>×<paramref name="height"/> picture: the shorter side
        /// becomes <paramref name="shorter"/>, the longer one <c>int(shorter · longer / shorter side)</c>, truncated.
        /// </summary>
        public static (int Width, int Height) ResizedSize(int width, int height, int shorter)
        {
            var (small, large) = width <= height ? (width, height) : (height, width);
            var longer = (int)((double)shorter * large / small);
            return width <= height ? (shorter, longer) : (longer, shorter);
        }

        // RGBA bytes (unpremultiplied) as three planes of RGB, the alpha dropped and the stored colour kept, as PIL's
        // convert("RGB") does in torchvision's and timm's loaders (a transparent pixel is whatever colour it holds).
        private static byte[] Planes(ReadOnlySpan<byte> rgba, int plane)
        {
            var rgb = new byte[3 * plane];
            for (var i = 0; i < plane; i++)
            for (var c = 0; c < 3; c++)
                rgb[c * plane + i] = rgba[4 * i + c];
            return rgb;
        }

        /// <summary>Mitchell's cubic, for pictures resized by SkiaSharp (bilinear and bicubic go through <see cref="PilResample"/>).</summary>
        private static SKSamplingOptions Sampling(string interpolation) => interpolation switch
        {
            "bilinear" => new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.Linear),
            "bicubic" => new SKSamplingOptions(SKCubicResampler.CatmullRom),
            _ => new SKSamplingOptions(SKCubicResampler.Mitchell),
        };

        /// <summary>Writes the <paramref name="size"/>² square at (<paramref name="x"/>, <paramref name="y"/>), mirrored if asked, normalised as <paramref name="preprocessing"/> says, into <paramref name="target"/> [3, size, size].</summary>
        /// <summary>Writes the <paramref name="size"/>² square at (<paramref name="x"/>, <paramref name="y"/>) as bytes [3, size, size], mirrored if asked.</summary>
        public void CropBytesInto(Span<byte> target, int x, int y, int size, bool flip)
        {
            var plane = Width * Height;
            for (var c = 0; c < 3; c++)
            for (var row = 0; row < size; row++)
            {
                var source = c * plane + (y + row) * Width + x;
                var line = target.Slice((c * size + row) * size, size);
                for (var col = 0; col < size; col++) line[col] = _rgb[source + (flip ? size - 1 - col : col)];
            }
        }

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
