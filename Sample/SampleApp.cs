using System;
using System.Collections.Generic;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using Spectre.Console;
using TorchSharp;

namespace ResNetGen.Sample;

/// <summary>
/// The sample's commands. <see cref="Run"/> takes the console to write to, so that tests drive every command in
/// process; <c>Program</c> passes the real one.
/// </summary>
public sealed partial class SampleApp
{
    public const string Checkpoint = "fashion-resnet20.safetensors";
    public const string CurvesFile = "fashion-resnet20-curves.png";
    public const string OnnxFile = "fashion-resnet20.onnx";
    private const string Architecture = nameof(ResNet20);

    private readonly IAnsiConsole _console;
    private readonly CancellationToken _cancel;
    private readonly Func<string[], ProcessStartInfo> _self;

    /// <param name="console">Where every command writes.</param>
    /// <param name="cancel">Ctrl+C.</param>
    /// <param name="self">Starts this program with the given arguments, for the doctor's child processes (default: this process's own command).</param>
    public SampleApp(IAnsiConsole console, CancellationToken cancel, Func<string[], ProcessStartInfo>? self = null)
    {
        _console = console;
        _cancel = cancel;
        _self = self ?? KernelProbes.Self;
    }

    /// <summary>The opset export writes unless --opset says otherwise.</summary>
    private const int DefaultOpset = 17;

    public int Run(string[] args)
    {
        var device = new Option<string>("--device") { Description = "cpu, or cuda (needs a CUDA backend: build with -p:TorchBackend=cuda)", DefaultValueFactory = _ => "cpu" };
        var epochs = new Option<int>("--epochs") { Description = "training epochs", DefaultValueFactory = _ => 10 };
        var batchSize = new Option<int>("--batch-size") { Description = "images per training step", DefaultValueFactory = _ => 128 };
        var lr = new Option<double?>("--lr") { Description = "peak learning rate of the cosine schedule (default: 0.1 with sgd, 0.002 with adamw, 0.005 with lamb)" };
        var data = new Option<string?>("--data") { Description = $"folder with the Fashion-MNIST IDX files (default: {FashionMnist.DebianFolder} if installed, else the embedded subset)" };
        var seed = new Option<long>("--seed") { Description = "random seed", DefaultValueFactory = _ => 1 };
        var output = new Option<string>("--output") { Description = "folder for the checkpoint and the curves", DefaultValueFactory = _ => "resnetgen-runs" };
        var limit = new Option<long?>("--limit") { Description = "use only the first N training images, shuffled each epoch (and the first N/5 test images, at least one)" };
        var evalLimit = new Option<long?>("--limit") { Description = "evaluate only the first N test images" };
        var checkpoint = new Option<string?>("--checkpoint") { Description = $"safetensors checkpoint (default: <output>/{Checkpoint})" };
        var top = new Option<int>("--top") { Description = "classes to show per image", DefaultValueFactory = _ => 3 };
        var paths = new Argument<string[]>("paths") { Description = "PNG or JPEG files, or folders of them", Arity = ArgumentArity.OneOrMore };
        var onnx = new Option<string?>("--onnx") { Description = "run this exported ONNX model on ONNX Runtime instead of TorchSharp" };
        var onnxOut = new Option<string?>("--to") { Description = "the .onnx file to write (default: the checkpoint's path with .onnx)" };
        var opset = new Option<int>("--opset") { Description = $"ONNX opset, 9 to {OnnxGraphBuilder.MaxOpset}", DefaultValueFactory = _ => DefaultOpset };
        var images = new Option<string>("--images") { Description = "folder of pictures: DIR/train/<class>/ and DIR/val/<class>/ (PNG or JPEG, any size, grayscale or colour)", Required = true };
        var from = new Option<string?>("--from") { Description = "pretrained weights for --arch, .pth (torchvision's, e.g. resnet18-f37072fd.pth) or .safetensors (timm's model.safetensors, or finetune's); omit to train from random initialisation" };
        var arch = new Option<string>("--arch") { Description = $"the network: {Sample.Architecture.Names}", DefaultValueFactory = _ => "resnet18" };
        var predictArch = new Option<string?>("--arch") { Description = $"read a checkpoint without the sample's metadata (timm's or torchvision's weights as .safetensors) as this network: {Sample.Architecture.Names}" };
        var labels = new Option<string?>("--labels") { Description = "class names for such a checkpoint, one a line (default: class 0, class 1, …)" };
        var trainableStages = new Option<int?>("--trainable-stages")
        {
            Description = "stages that keep training besides the classifier: 0 (the classifier only) to 4, or 5 for every layer (default: 1 after --from; 5 from random initialisation, where a frozen stage would stay random)",
        };
        var size = new Option<int?>("--size") { Description = "side of the square the network sees, in pixels (default: the weights' own; 224)" };
        var weightsName = new Option<string?>("--weights")
        {
            Description = "the published weights' name, for their preprocessing: a torchvision file name (resnet50-11ad3fa6.pth) or a timm tag (resnet50d.ra2_in1k); default: --from's file name where the sample knows it",
        };
        var cropPct = new Option<double?>("--crop-pct") { Description = "the crop's share of the resized shorter side (default: the weights' own; torchvision's and timm's 0.875)" };
        var interpolation = new Option<string?>("--interpolation") { Description = $"how pictures are resized: {string.Join(", ", Preprocessing.Interpolations)} (default: the weights' own; bilinear for torchvision's, bicubic for timm's)" };
        var mean = new Option<string?>("--mean") { Description = "per-channel mean, R/G/B (default: the weights' own; ImageNet's 0.485/0.456/0.406)" };
        var std = new Option<string?>("--std") { Description = "per-channel standard deviation, R/G/B (default: the weights' own; ImageNet's 0.229/0.224/0.225)" };
        var fineTuneEpochs = new Option<int>("--epochs") { Description = "training epochs", DefaultValueFactory = _ => 5 };
        var fineTuneBatch = new Option<int>("--batch-size") { Description = "pictures per training step", DefaultValueFactory = _ => 32 };
        var fineTuneLr = new Option<double?>("--lr") { Description = "peak learning rate of the cosine schedule (default: 0.01 with sgd, 0.001 with adamw, 0.002 with lamb)" };
        var optimizer = new Option<string>("--optimizer")
        {
            Description = "sgd: SGD with Nesterov momentum 0.9 (the default, as before); adamw: AdamW (PyTorch's); lamb: LAMB (timm's, its gradient-norm clipping at 1 included). adamw and lamb leave biases and norms without weight decay, as timm does",
            DefaultValueFactory = _ => "sgd",
        };
        optimizer.AcceptOnlyFromAmong(TrainRecipe.Optimizers.ToArray());
        var weightDecay = new Option<double?>("--weight-decay") { Description = "weight decay (default: train 5e-4 with sgd, finetune 1e-4 with sgd; 0.05 with adamw, 0.02 with lamb)" };
        Check(weightDecay, v => v is null or (>= 0 and < 1), "must be in [0, 1)");
        var labelSmoothing = new Option<double>("--label-smoothing") { Description = "label smoothing of the cross-entropy targets, 0 (the default: none) to below 1; timm's recipes use 0.1", DefaultValueFactory = _ => 0 };
        Check(labelSmoothing, v => v is >= 0 and < 1, "must be in [0, 1)");
        var mixupAlpha = new Option<double>("--mixup") { Description = "mixup's α: each batch blended with itself reversed, λ from Beta(α, α), the labels blended alike; 0 (the default) is off, timm's recipes use 0.1–0.8", DefaultValueFactory = _ => 0 };
        Check(mixupAlpha, v => v is >= 0 and <= 10, "must be 0 (off) to 10");
        var cutmixAlpha = new Option<double>("--cutmix") { Description = "cutmix's α: a box of the reversed batch pasted in, its area from Beta(α, α), the labels mixed by area; 0 (the default) is off, timm's recipes use 1.0; with --mixup too, each batch picks one, half and half", DefaultValueFactory = _ => 0 };
        Check(cutmixAlpha, v => v is >= 0 and <= 10, "must be 0 (off) to 10");
        var ema = new Option<double?>("--ema") { Description = "keep an exponential moving average of the weights (batch-norm statistics too) with this decay (e.g. 0.999), warmed up as timm's (1 − (1 + step)^−2/3 until it reaches it), evaluate it each epoch and save it as the checkpoint; default: none" };
        Check(ema, v => v is null or (> 0 and < 1), "must be between 0 and 1, e.g. 0.999");
        var augment = new Option<string>("--augment")
        {
            Description = "automatic augmentation of each training picture's bytes (a picture folder's after its random crop and flip, as torchvision's recipes; Fashion-MNIST's before its shift and flip), as torchvision's: trivialaugment (TrivialAugmentWide: one operation a picture at a random magnitude), randaugment (RandAugment: two at magnitude 9 of 31), or none (the default)",
            DefaultValueFactory = _ => "none",
        };
        augment.AcceptOnlyFromAmong(TrainRecipe.Augments.ToArray());
        var recipeName = new Option<string>("--recipe")
        {
            Description = "a named combination of the options above, measured (README, Training recipes): original (the default: Nesterov SGD and nothing else) or "
                          + "fashion (" + TrainRecipe.Named["fashion"].Describe() + "; the best at 10 epochs on Fashion-MNIST); an option given as well wins over it",
            DefaultValueFactory = _ => "original",
        };
        recipeName.AcceptOnlyFromAmong(TrainRecipe.Named.Keys.ToArray());
        var clipGrad = new Option<double?>("--clip-grad") { Description = "clip the gradients' global 2-norm to this before each step; default: none" };
        Check(clipGrad, v => v is null or > 0, "must be positive");
        var folderTo = new Option<string>("--to") { Description = "the folder to create, with train/ and val/ inside", Required = true };
        var classes = new Option<string>("--classes") { Description = "Fashion-MNIST labels to write: a range, a list or both (0-4, 5,7,9)", DefaultValueFactory = _ => "0-9" };
        var trainPerClass = new Option<int>("--train-per-class") { Description = "training pictures per class (from the training set)", DefaultValueFactory = _ => 100 };
        var valPerClass = new Option<int>("--val-per-class") { Description = "validation pictures per class (from the test set)", DefaultValueFactory = _ => 100 };
        var precision = new Option<string>("--precision")
        {
            Description = "what the network computes in: fp32 (float32), bf16 (mixed bfloat16 over float32 weights, as torch.autocast; the fast choice on a CPU with AVX512-BF16 or AMX), "
                          + "fp16 (mixed float16 with dynamic loss scaling; a GPU's) or auto (the fastest this device computes correctly: bf16 where the CPU has bfloat16 arithmetic as oneDNN runs here, else fp32; says which and why)",
            DefaultValueFactory = _ => "fp32",
        };
        Check(precision, v => v == "auto" || Precisions.ContainsKey(v), "use fp32, bf16, fp16 or auto");
        // --precision auto asks the runtime on the device the command runs on; the reason is printed above the precision line.
        (Precision Precision, string? Reason) ChosenPrecision(ParseResult r, torch.Device on)
        {
            var name = r.GetValue(precision)!;
            return name == "auto" ? Autocast.Fastest(on) : (Precisions[name], null);
        }
        foreach (var option in new[] { epochs, batchSize, top, fineTuneEpochs, fineTuneBatch, trainPerClass, valPerClass })
            Check(option, v => v > 0, "must be a positive whole number");
        Check(device, v => v.ToLowerInvariant() is "cpu" or "cuda", "unknown device; use cpu or cuda");
        Check(trainableStages, v => v is null or (>= 0 and <= 5), "must be 0 to 5 (the sample's networks have four stages; 5 trains the stem too)");
        Check(arch, v => Sample.Architecture.Find(v) is not null, $"not a network of this sample; use one of: {Sample.Architecture.Names}");
        Check(predictArch, v => v is null || Sample.Architecture.Find(v) is not null, $"not a network of this sample; use one of: {Sample.Architecture.Names}");
        Check(cropPct, v => v is null or > 0.3 and <= 1, "must be above 0.3 and at most 1 (torchvision's and timm's 0.875)");
        Check(interpolation, v => v is null || Preprocessing.Interpolations.Contains(v), $"not an interpolation; use {string.Join(", ", Preprocessing.Interpolations)}");
        foreach (var option in new[] { mean, std })
            Check(option, v => v is null || Triple(v) is { } t && (option != std || t.All(x => x > 0)), "needs three numbers R/G/B (0.485/0.456/0.406), standard deviations above 0");
        Check(size, v => v is >= 32 and <= 1024, "must be 32 to 1024 pixels");
        Check(opset, v => v is >= 9 and <= OnnxGraphBuilder.MaxOpset,
            $"must be 9 to {OnnxGraphBuilder.MaxOpset}: the sample's networks need BatchNormalization-9, and {OnnxGraphBuilder.MaxOpset} is the newest opset ResNetGen has been checked against (default {DefaultOpset})");
        foreach (var option in new[] { lr, fineTuneLr })
            Check(option, v => v is > 0 and <= 10, "must be above 0 and at most 10");
        foreach (var option in new[] { limit, evalLimit })
            Check(option, v => v is null or > 0, "must be positive");

        var summary = new Command("summary", "Print the compile-time summaries of the sample's networks.");
        summary.SetAction(_ => Guard(() => Summary()));

        var maxPixels = new Option<long>("--max-pixels")
        {
            Description = $"the most pixels a picture may declare (a Fashion-MNIST image file: its 28×28 images together); larger ones are refused before decoding (default {PictureReader.DefaultMaxPixels:N0}, PIL's Image.MAX_IMAGE_PIXELS)",
            DefaultValueFactory = _ => PictureReader.DefaultMaxPixels,
        };
        Check(maxPixels, v => v is >= 1 and <= 1L << 40, "must be a positive number of pixels");

        var train = new Command("train", "Train ResNet-20 on Fashion-MNIST: live progress, an evaluation per epoch, a checkpoint and a PNG of the curves.")
            { device, epochs, batchSize, lr, data, seed, output, limit, precision, maxPixels, optimizer, weightDecay, labelSmoothing, mixupAlpha, cutmixAlpha, ema, clipGrad, augment, recipeName };
        // A named recipe sets the options; any of them given on the command line wins over it.
        TrainRecipe Recipe(ParseResult r)
        {
            var preset = TrainRecipe.Named[r.GetValue(recipeName)!];
            T Given<T>(Option<T> option, T fallback) => r.GetResult(option) is { Implicit: false } ? r.GetValue(option)! : fallback;
            return new TrainRecipe(Given(optimizer, preset.Optimizer), Given(labelSmoothing, preset.LabelSmoothing), Given(mixupAlpha, preset.Mixup),
                Given(cutmixAlpha, preset.Cutmix), Given(ema, preset.Ema), Given(clipGrad, preset.ClipGrad), Given(augment, preset.Augment));
        }
        train.SetAction(r => Guard(() =>
        {
            var recipe = Recipe(r);
            var rate = r.GetValue(lr) ?? recipe.Optimizer switch { "adamw" => 0.002, "lamb" => 0.005, _ => 0.1 };
            var decay = r.GetValue(weightDecay) ?? recipe.Optimizer switch { "adamw" => 0.05, "lamb" => 0.02, _ => 5e-4 };
            var on = Device(r.GetValue(device)!);
            var (chosen, why) = ChosenPrecision(r, on);
            return Train(on, r.GetValue(data), new TrainSettings(
                r.GetValue(epochs), r.GetValue(batchSize), rate, decay, r.GetValue(seed), r.GetValue(limit), TestLimit(r.GetValue(limit)),
                chosen, recipe, why), r.GetValue(output)!, r.GetValue(maxPixels));
        }));


        var engine = new Option<string>("--engine")
        {
            Description = $"what computes a checkpoint's predictions: onnxruntime (the network's in-process ONNX Runtime engine, the fastest on a CPU once built), onnxruntime-int8 (the same quantised to int8 from --calibration pictures: about 2.5-3.5x faster on a CPU with VNNI), torchsharp, or auto: the engine on the CPU for {EngineThreshold} pictures or more, where its build pays back",
            DefaultValueFactory = _ => "auto",
        };
        Check(engine, v => v is "auto" or "onnxruntime" or "onnxruntime-int8" or "torchsharp", "use auto, onnxruntime, onnxruntime-int8 or torchsharp");
        var calibration = new Option<string?>("--calibration")
        {
            Description = "folder of pictures (subfolders too) the int8 engine calibrates its activation ranges on, like those it will see; for train's Fashion-MNIST checkpoint the default is its own training set",
        };
        var calibrationCount = new Option<int>("--calibration-count")
        {
            Description = "pictures the int8 engine calibrates on, at most", DefaultValueFactory = _ => DefaultCalibrationCount,
        };
        Check(calibrationCount, ValidCalibrationCount, "must be 1 to 100,000 pictures");
        var skipUnreadable = new Option<bool>("--skip-unreadable")
        {
            Description = "train on the readable pictures when some cannot be read (too large, truncated, not an image); by default finetune lists them and stops before training",
        };
        var predict = new Command("predict", "Classify pictures (PNG or JPEG files, or folders of them) with a checkpoint, or with an exported model on ONNX Runtime (--onnx).")
            { paths, device, output, checkpoint, top, onnx, predictArch, labels, weightsName, engine, maxPixels, calibration, calibrationCount };
        predict.SetAction(r => Guard(() => Predict(Device(r.GetValue(device)!), r.GetValue(paths)!, CheckpointPath(r.GetValue(checkpoint), r.GetValue(output)!), r.GetValue(top), r.GetValue(onnx),
            r.GetValue(predictArch), r.GetValue(labels), r.GetValue(engine)!, r.GetValue(maxPixels), new Int8Request(r.GetValue(calibration), r.GetValue(calibrationCount)),
            r.GetValue(weightsName))));

        var evalEngine = new Option<string>("--engine")
        {
            Description = "what computes: torchsharp, onnxruntime (the float32 engine) or onnxruntime-int8 (the int8 engine beside the float32 one: accuracy of both, the change, and how often they agree)",
            DefaultValueFactory = _ => "torchsharp",
        };
        Check(evalEngine, v => v is "torchsharp" or "onnxruntime" or "onnxruntime-int8", "use torchsharp, onnxruntime or onnxruntime-int8");
        var evalImages = new Option<string?>("--images") { Description = "evaluate a fine-tuned checkpoint on DIR/val/<class>/ pictures (finetune's layout) instead of Fashion-MNIST's test set" };
        var calibrationMethod = new Option<string>("--calibration-method") { Description = "how the int8 engine picks each activation's range: percentile or minmax", DefaultValueFactory = _ => "percentile" };
        Check(calibrationMethod, v => v is "percentile" or "minmax", "use percentile or minmax");
        var percentile = new Option<double>("--percentile") { Description = "the percentile method's share of values kept at each end, above 90 and at most 100", DefaultValueFactory = _ => 99.999 };
        Check(percentile, v => v is > 90 and <= 100, "must be above 90 and at most 100");
        var eval = new Command("eval", "Evaluate a checkpoint on the Fashion-MNIST test set (or a fine-tuned one on --images DIR/val), per class; with --engine onnxruntime-int8, what int8 costs.")
            { device, data, output, checkpoint, evalLimit, evalEngine, evalImages, calibration, calibrationCount, calibrationMethod, percentile, maxPixels };
        eval.SetAction(r => Guard(() => Eval(Device(r.GetValue(device)!), r.GetValue(data), CheckpointPath(r.GetValue(checkpoint), r.GetValue(output)!), r.GetValue(evalLimit),
            new EvalEngine(r.GetValue(evalEngine)!, r.GetValue(evalImages), new Int8Request(r.GetValue(calibration), r.GetValue(calibrationCount),
                r.GetValue(calibrationMethod) == "minmax" ? CalibrationMethod.MinMax : CalibrationMethod.Percentile, r.GetValue(percentile)), r.GetValue(maxPixels)))));

        var pytorch = new Option<string?>("--pytorch") { Description = "instead of ONNX, write a PyTorch model into this folder: model.py (the network's PyTorch twin), weights.safetensors, safetensors_io.py and checkpoint.py (torch and numpy only)" };
        var int8 = new Option<bool>("--int8") { Description = "write the int8 engine's quantised graph (QDQ, int8 weights per channel, uint8 activations calibrated on --calibration pictures) instead of the float32 one; ONNX Runtime serves it on its integer kernels" };
        var untrained = new Option<bool>("--untrained") { Description = "with --pytorch and --arch: the architecture untrained (this sample's initialisation), no checkpoint" };
        var export = new Command("export", "Export a checkpoint (train's or finetune's, or timm's or torchvision's with --arch) as an ONNX model with folded batch-norms, for ONNX Runtime, Triton or TensorRT, or as a PyTorch model (--pytorch).")
            { output, checkpoint, onnxOut, opset, predictArch, labels, weightsName, pytorch, untrained, int8, calibration, calibrationCount, maxPixels };
        export.SetAction(r => Guard(() =>
        {
            var checkpointPath = CheckpointPath(r.GetValue(checkpoint), r.GetValue(output)!);
            var quantise = r.GetValue(int8) ? new Int8Request(r.GetValue(calibration), r.GetValue(calibrationCount)) : null;
            if (quantise is null && r.GetValue(calibration) is not null) throw new SampleException("--calibration is for --int8: add --int8, or drop --calibration.");
            if (r.GetValue(pytorch) is not { } folder)
            {
                if (r.GetValue(untrained)) throw new SampleException("--untrained writes a PyTorch model: add --pytorch DIR (and --arch NAME).");
                return Export(checkpointPath, r.GetValue(onnxOut), r.GetValue(opset), r.GetValue(predictArch), r.GetValue(labels), quantise, r.GetValue(weightsName), r.GetValue(maxPixels));
            }
            if (quantise is not null) throw new SampleException("--int8 writes an ONNX model: drop --pytorch, or --int8.");
            if (r.GetValue(onnxOut) is not null) throw new SampleException("--pytorch and --to: give one (a PyTorch folder, or an .onnx file).");
            if (r.GetValue(weightsName) is not null) throw new SampleException("--weights names the preprocessing of an ONNX export or a prediction; --pytorch writes the checkpoint's own: drop --weights.");
            if (r.GetValue(untrained) && r.GetValue(checkpoint) is not null) throw new SampleException("--untrained and --checkpoint: give one.");
            return ExportPyTorch(checkpointPath, folder, r.GetValue(predictArch), r.GetValue(labels), r.GetValue(untrained));
        }));

        var finetune = new Command("finetune", $"Fine-tune a pretrained network ({Sample.Architecture.Names}) on a folder of your own pictures: frozen early stages, a new classifier, the preprocessing its weights were trained with, live progress, validation per epoch, a checkpoint and a PNG of the curves.")
            { images, from, arch, weightsName, trainableStages, fineTuneEpochs, size, cropPct, interpolation, mean, std, output, fineTuneBatch, fineTuneLr, device, seed, maxPixels, skipUnreadable,
              precision, optimizer, weightDecay, labelSmoothing, mixupAlpha, cutmixAlpha, ema, clipGrad, augment, recipeName };
        finetune.SetAction(r => Guard(() =>
        {
            var network = Sample.Architecture.Named(r.GetValue(arch)!);
            var (baseline, source) = PublishedPreprocessing(network, r.GetValue(weightsName), r.GetValue(from));
            var preprocessing = (r.GetValue(size) is { } given ? baseline.At(given) : baseline) with
            {
                CropPct = r.GetValue(cropPct) ?? baseline.CropPct,
                Interpolation = r.GetValue(interpolation) ?? baseline.Interpolation,
                Mean = r.GetValue(mean) is { } m ? Triple(m)! : baseline.Mean,
                Std = r.GetValue(std) is { } sd ? Triple(sd)! : baseline.Std,
            };
            // A missing --from is told before any picture is decoded.
            if (r.GetValue(from) is { } fromPath && !File.Exists(fromPath))
                throw new SampleException($"--from {fromPath}: no such file. --from needs {network.Name} weights: {network.Weights}, or a .safetensors written by finetune --arch {network.Name}.");
            var stages = r.GetValue(trainableStages) ?? (r.GetValue(from) is null ? 5 : 1);
            var recipe = Recipe(r);
            var rate = r.GetValue(fineTuneLr) ?? recipe.Optimizer switch { "adamw" => 0.001, "lamb" => 0.002, _ => 0.01 };
            var decay = r.GetValue(weightDecay) ?? recipe.Optimizer switch { "adamw" => 0.05, "lamb" => 0.02, _ => 1e-4 };
            var on = Device(r.GetValue(device)!);
            var (chosen, why) = ChosenPrecision(r, on);
            return FineTune(on, new FineTuneRequest(r.GetValue(images)!, r.GetValue(from), network, stages, preprocessing,
                new TrainSettings(r.GetValue(fineTuneEpochs), r.GetValue(fineTuneBatch), rate, decay, r.GetValue(seed), null, null,
                    chosen, recipe, why), r.GetValue(output)!,
                r.GetValue(maxPixels), r.GetValue(skipUnreadable), source));
        }));

        var picture = new Argument<string>("picture") { Description = "a PNG or JPEG picture" };
        var preprocessOut = new Option<string>("--out") { Description = "the safetensors file to write: key input, [1, 3, H, W] float32", Required = true };
        var preprocessWeights = new Option<string>("--weights") { Description = "the published weights whose evaluation transforms to apply: a torchvision file name (resnet50-11ad3fa6.pth) or a timm tag (resnet50d.ra2_in1k)", Required = true };
        var preprocess = new Command("preprocess", "Write the tensor a published weight file's network receives for a picture (its own resize, crop, interpolation and normalisation), to compare a .NET pipeline with PyTorch's.")
            { picture, preprocessWeights, preprocessOut, maxPixels };
        preprocess.SetAction(r => Guard(() => Preprocess(r.GetValue(picture)!, r.GetValue(preprocessWeights)!, r.GetValue(preprocessOut)!, r.GetValue(maxPixels))));

        var fashionFolder = new Command("fashion-folder", "Write Fashion-MNIST classes as a picture folder (train/<class>/*.png from the training set, val/<class>/*.png from the test set) for finetune.")
            { folderTo, classes, trainPerClass, valPerClass, data, maxPixels };
        fashionFolder.SetAction(r => Guard(() => FashionFolder(r.GetValue(data), r.GetValue(folderTo)!, r.GetValue(classes)!, r.GetValue(trainPerClass), r.GetValue(valPerClass), r.GetValue(maxPixels))));

        var probe = new Option<string?>("--probe") { Description = "run one probe in this process (what doctor's child processes do)", Hidden = true };
        var probeDevice = new Option<string?>("--probe-device") { Description = "the device a --probe computes on (cpu, cuda:N)", Hidden = true };
        var doctorDtype = new Option<string>("--dtype")
        {
            Description = "which precisions to probe: all (float32, and bfloat16 and float16 as Precision computes them), float32, bfloat16 or float16",
            DefaultValueFactory = _ => "all",
        };
        Check(doctorDtype, v => Doctor.DtypeChoices.ContainsKey(v), $"use {string.Join(", ", Doctor.DtypeChoices.Keys)}");
        var doctor = new Command("doctor", "What this machine can run safely: CPU, caches, libtorch (which one was loaded, CPU or CUDA build), the CUDA devices and cuDNN, oneDNN, threads, and every ResNet convolution probed forward and backward in both layouts and in float32, bfloat16 and float16, each in a child process; on a CUDA machine also on each GPU against the same float64 CPU reference.")
            { probe, probeDevice, doctorDtype };
        doctor.SetAction(r => Guard(() => r.GetValue(probe) is { } name
            ? Doctor.Probe(name, r.GetValue(probeDevice) is { } d ? new torch.Device(d) : null)
            : new Doctor(_console, n => _self(new[] { "doctor", "--probe", n })).Run(Doctor.DtypeChoices[r.GetValue(doctorDtype)!])));

        var benchBatch = new Option<int>("--batch") { Description = "ResNet-50's batch size (ResNet-20 runs 32 times as many 28×28 pictures)", DefaultValueFactory = _ => 8 };
        var benchRuns = new Option<int>("--runs") { Description = "timed runs per engine, after one warm-up; the median is shown", DefaultValueFactory = _ => 5 };
        foreach (var option in new[] { benchBatch, benchRuns }) Check(option, v => v is > 0 and <= 256, "must be 1 to 256");
        var bench = new Command("bench", "Time inference of the generated ResNet-20 and ResNet-50 with every engine this sample can serve them on (TorchSharp, folded, ONNX Runtime in process), and name the fastest.")
            { device, seed, benchBatch, benchRuns };
        bench.SetAction(r => Guard(() => Bench(Device(r.GetValue(device)!), r.GetValue(seed), r.GetValue(benchBatch), r.GetValue(benchRuns))));

        var root = new RootCommand("""
            ResNetGen sample: ResNets generated at build time from [ResNet] attributes, trained on Fashion-MNIST or fine-tuned on your pictures.
            With no command it runs a demo of two to three minutes on two cores: summary, a short training run, evaluation, a prediction and an ONNX export.
            """)
        {
            summary, train, eval, predict, export, finetune, fashionFolder, preprocess, bench, doctor, device, data, seed, output,
        };
        root.SetAction(r => Guard(() => Demo(Device(r.GetValue(device)!), r.GetValue(data), r.GetValue(seed), r.GetValue(output)!)));
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            // A usage error is one line and exit code 2; --help shows the rest.
            var command = string.Join(" ", parsed.CommandResult.Command is RootCommand ? Array.Empty<string>() : new[] { parsed.CommandResult.Command.Name });
            var message = System.Text.RegularExpressions.Regex.Replace(parsed.Errors[0].Message,
                @"^Cannot parse argument '(.*)' for option '(.*)' as expected type '(.*)'\.$",
                m => $"{m.Groups[2].Value} {m.Groups[1].Value}: not a {(m.Groups[3].Value.Contains("System.Double", StringComparison.Ordinal) ? "number" : "whole number")}.");
            _console.MarkupLine($"[red]error:[/] {Markup.Escape(message)} See {Markup.Escape(string.Join(" ", new[] { command, "--help" }.Where(p => p.Length > 0)))}.");
            return 2;
        }
        return parsed.Invoke(new InvocationConfiguration { Output = Writer, Error = Writer, EnableDefaultExceptionHandler = false });
    }

    /// <summary>Adds a range check to <paramref name="option"/> that runs only on a value that parsed (a value that did not is the parser's own error).</summary>
    /// <summary>Three numbers R/G/B (or R,G,B); null if the text is not that.</summary>
    private static float[]? Triple(string text)
    {
        try
        {
            var values = Preprocessing.Floats(text);
            return values.Length == 3 && values.All(float.IsFinite) ? values : null;
        }
        catch (FormatException)
        {
            return null;
        }
    }

    private static void Check<T>(Option<T> option, Func<T, bool> valid, string problem) =>
        option.Validators.Add(r =>
        {
            if (r.Tokens.Count == 0) return;
            try
            {
                if (!valid(r.GetValueOrDefault<T>())) r.AddError($"{option.Name} {r.Tokens[^1].Value}: {problem}.");
            }
            catch (InvalidOperationException)
            {
                // The value did not parse: the parser has reported that already (worded in Run), nothing to range-check.
            }
        });

    private TextWriter Writer => new ConsoleWriter(_console);

    /// <summary>
    /// Known problems become one line and exit code 1; an interruption exits 130. Anything else is a bug in the sample:
    /// one line too, with the stack trace only when RESNETGEN_SAMPLE_TRACE=1 asks for it.
    /// </summary>
    internal int Guard(Func<int> action)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (e is SampleException or WeightFileException or IOException or UnauthorizedAccessException or ArgumentException or LibTorchNotFoundException)
        {
            _console.MarkupLine($"[red]error:[/] {Markup.Escape(e.Message)}");
            return 1;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            var trace = Environment.GetEnvironmentVariable("RESNETGEN_SAMPLE_TRACE") == "1";
            _console.MarkupLine($"[red]error:[/] {Markup.Escape($"unexpected {e.GetType().Name}: {e.Message.Split('\n')[0]}")} (a bug in the sample; {(trace ? "trace below" : "RESNETGEN_SAMPLE_TRACE=1 shows the stack trace")}).");
            if (trace) _console.WriteLine(e.ToString());
            return 1;
        }
    }

    /// <summary>The test images a training run with <c>--limit N</c> evaluates on: N/5, and at least one.</summary>
    internal static long? TestLimit(long? trainLimit) => trainLimit is { } n ? Math.Max(1, n / 5) : null;

    private static string CheckpointPath(string? checkpoint, string output) => checkpoint ?? Path.Combine(output, Checkpoint);

    private static torch.Device Device(string name)
    {
        LibTorch.EnsureLoadable(); // before TorchSharp's first call: a missing libtorch is one clear line
        switch (name.ToLowerInvariant())
        {
            case "cpu":
                return torch.CPU;
            case "cuda":
                if (!torch.cuda.is_available())
                    throw new SampleException($"--device cuda: CUDA is not available to this libtorch ({LibTorch.Describe()}). Build with -p:TorchBackend=cuda, or with -p:TorchBackend=external and LD_LIBRARY_PATH naming a CUDA build's folder (a CUDA PyTorch's torch/lib), on a machine with an NVIDIA GPU; or use --device cpu.");
                return torch.CUDA;
            default:
                throw new SampleException($"--device {name}: unknown device. Use cpu or cuda.");
        }
    }

    private static string F(double v) => v.ToString("0.000", CultureInfo.InvariantCulture);

    private static string P(double v) => (100 * v).ToString("0.00", CultureInfo.InvariantCulture) + "%";

    /// <summary>Routes System.CommandLine's help and errors through the Spectre console.</summary>
    private sealed class ConsoleWriter : TextWriter
    {
        private readonly IAnsiConsole _console;
        public ConsoleWriter(IAnsiConsole console) => _console = console;
        public override System.Text.Encoding Encoding => System.Text.Encoding.UTF8;
        public override void Write(char value) => _console.Profile.Out.Writer.Write(value);
        public override void Write(string? value) => _console.Profile.Out.Writer.Write(value);
        public override void WriteLine(string? value) => _console.Profile.Out.Writer.WriteLine(value);
    }
}
