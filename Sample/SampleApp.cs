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
public sealed class SampleApp
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

    public int Run(string[] args)
    {
        var device = new Option<string>("--device") { Description = "cpu, or cuda (needs a CUDA backend: build with -p:TorchBackend=cuda)", DefaultValueFactory = _ => "cpu" };
        var epochs = new Option<int>("--epochs") { Description = "training epochs", DefaultValueFactory = _ => 10 };
        var batchSize = new Option<int>("--batch-size") { Description = "images per training step", DefaultValueFactory = _ => 128 };
        var lr = new Option<double>("--lr") { Description = "peak learning rate of the cosine schedule", DefaultValueFactory = _ => 0.1 };
        var data = new Option<string?>("--data") { Description = $"folder with the Fashion-MNIST IDX files (default: {FashionMnist.DebianFolder} if installed, else the embedded subset)" };
        var seed = new Option<long>("--seed") { Description = "random seed", DefaultValueFactory = _ => 1 };
        var output = new Option<string>("--output") { Description = "folder for the checkpoint and the curves", DefaultValueFactory = _ => "resnetgen-runs" };
        var limit = new Option<long?>("--limit") { Description = "use only the first N training images, shuffled each epoch (and the first N/5 test images, at least one)" };
        var evalLimit = new Option<long?>("--limit") { Description = "evaluate only the first N test images" };
        var checkpoint = new Option<string?>("--checkpoint") { Description = $"safetensors checkpoint (default: <output>/{Checkpoint})" };
        var top = new Option<int>("--top") { Description = "classes to show per image", DefaultValueFactory = _ => 3 };
        var paths = new Argument<string[]>("paths") { Description = "PNG or JPEG files, or folders of them", Arity = ArgumentArity.OneOrMore };
        var onnx = new Option<string?>("--onnx") { Description = "run this exported ONNX model on ONNX Runtime instead of TorchSharp" };
        var onnxOut = new Option<string?>("--to") { Description = $"the .onnx file to write (default: <output>/{OnnxFile})" };
        var opset = new Option<int>("--opset") { Description = "ONNX opset", DefaultValueFactory = _ => 17 };
        foreach (var option in new Option<int>[] { epochs, batchSize, top })
            option.Validators.Add(r => { if (r.GetValueOrDefault<int>() <= 0) r.AddError($"{r.Option.Name} must be a positive whole number."); });
        lr.Validators.Add(r => { if (r.GetValueOrDefault<double>() is <= 0 or > 10) r.AddError("--lr must be above 0 and at most 10."); });
        foreach (var option in new[] { limit, evalLimit })
            option.Validators.Add(r => { if (r.GetValueOrDefault<long?>() is <= 0) r.AddError("--limit must be positive."); });

        var summary = new Command("summary", "Print the compile-time summaries of the sample's networks.");
        summary.SetAction(_ => Guard(() => Summary()));

        var train = new Command("train", "Train ResNet-20 on Fashion-MNIST: live progress, an evaluation per epoch, a checkpoint and a PNG of the curves.")
            { device, epochs, batchSize, lr, data, seed, output, limit };
        train.SetAction(r => Guard(() => Train(Device(r.GetValue(device)!), r.GetValue(data), new TrainSettings(
            r.GetValue(epochs), r.GetValue(batchSize), r.GetValue(lr), 5e-4, r.GetValue(seed), r.GetValue(limit), TestLimit(r.GetValue(limit))), r.GetValue(output)!)));

        var eval = new Command("eval", "Evaluate a checkpoint on the Fashion-MNIST test set, per class.") { device, data, output, checkpoint, evalLimit };
        eval.SetAction(r => Guard(() => Eval(Device(r.GetValue(device)!), r.GetValue(data), CheckpointPath(r.GetValue(checkpoint), r.GetValue(output)!), r.GetValue(evalLimit))));

        var predict = new Command("predict", "Classify pictures (PNG or JPEG files, or folders of them) with a checkpoint, or with an exported model on ONNX Runtime (--onnx).") { paths, device, output, checkpoint, top, onnx };
        predict.SetAction(r => Guard(() => Predict(Device(r.GetValue(device)!), r.GetValue(paths)!, CheckpointPath(r.GetValue(checkpoint), r.GetValue(output)!), r.GetValue(top), r.GetValue(onnx))));

        var export = new Command("export", "Export a checkpoint as an ONNX model (folded batch-norm), for ONNX Runtime, Triton or TensorRT.") { output, checkpoint, onnxOut, opset };
        export.SetAction(r => Guard(() => Export(CheckpointPath(r.GetValue(checkpoint), r.GetValue(output)!), r.GetValue(onnxOut) ?? Path.Combine(r.GetValue(output)!, OnnxFile), r.GetValue(opset))));

        var probe = new Option<string?>("--probe") { Description = "run one probe in this process (what doctor's child processes do)", Hidden = true };
        var doctor = new Command("doctor", "What this machine can run safely: CPU, caches, libtorch, oneDNN, threads, and every ResNet convolution probed forward and backward in both layouts, each in a child process.") { probe };
        doctor.SetAction(r => Guard(() => r.GetValue(probe) is { } name
            ? Doctor.Probe(name)
            : new Doctor(_console, n => _self(new[] { "doctor", "--probe", n })).Run()));

        var bench = new Command("bench", "Time inference of the generated ResNet-20 and ResNet-50.") { device, seed };
        bench.SetAction(r => Guard(() => Bench(Device(r.GetValue(device)!), r.GetValue(seed))));

        var root = new RootCommand("""
            ResNetGen sample: ResNets generated at build time from [ResNet] attributes, trained on Fashion-MNIST.
            With no command it runs a two-minute demo: summary, a short training run, evaluation and a prediction.
            """)
        {
            summary, train, eval, predict, export, bench, doctor, device, data, seed, output,
        };
        root.SetAction(r => Guard(() => Demo(Device(r.GetValue(device)!), r.GetValue(data), r.GetValue(seed), r.GetValue(output)!)));
        return root.Parse(args).Invoke(new InvocationConfiguration { Output = Writer, Error = Writer, EnableDefaultExceptionHandler = false });
    }

    private TextWriter Writer => new ConsoleWriter(_console);

    /// <summary>Known problems become one line and exit code 1; an interruption exits 130.</summary>
    private int Guard(Func<int> action)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (e is SampleException or WeightFileException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            _console.MarkupLine($"[red]error:[/] {Markup.Escape(e.Message)}");
            return 1;
        }
    }

    /// <summary>The test images a training run with <c>--limit N</c> evaluates on: N/5, and at least one.</summary>
    internal static long? TestLimit(long? trainLimit) => trainLimit is { } n ? Math.Max(1, n / 5) : null;

    private static string CheckpointPath(string? checkpoint, string output) => checkpoint ?? Path.Combine(output, Checkpoint);

    private static torch.Device Device(string name)
    {
        switch (name.ToLowerInvariant())
        {
            case "cpu":
                return torch.CPU;
            case "cuda":
                if (!torch.cuda.is_available())
                    throw new SampleException("--device cuda: CUDA is not available here. Build with -p:TorchBackend=cuda on a machine with an NVIDIA GPU, or use --device cpu.");
                return torch.CUDA;
            default:
                throw new SampleException($"--device {name}: unknown device. Use cpu or cuda.");
        }
    }

    private int Summary()
    {
        _console.MarkupLine($"[bold]ResNet20[/] (CIFAR-style, for 1×28×28 Fashion-MNIST): {ResNet20.ParameterCount:N0} parameters, {ResNet20.MultAdds:N0} mult-adds");
        _console.WriteLine(ResNet20.Summary);
        _console.MarkupLine($"[bold]ResNet50[/] (torchvision's resnet50): {ResNet50.ParameterCount:N0} parameters, {ResNet50.MultAdds / 1e9:0.00} G mult-adds at 224×224");
        _console.WriteLine(ResNet50.Summary);
        return 0;
    }

    private int Demo(torch.Device device, string? dataFolder, long seed, string output)
    {
        _console.Write(new Rule("[bold]1. The networks[/]").LeftJustified());
        _console.MarkupLine($"ResNet20: {ResNet20.ParameterCount:N0} parameters, {ResNet20.MultAdds / 1e6:0.0} M mult-adds; ResNet50: {ResNet50.ParameterCount:N0} parameters, {ResNet50.MultAdds / 1e9:0.00} G mult-adds (all known at build time).");
        _console.WriteLine(ResNet20.Summary);

        _console.Write(new Rule("[bold]2. A short training run[/]").LeftJustified());
        // Four epochs on at most 12,000 images keep the demo near a minute on two CPU cores.
        var settings = new TrainSettings(4, 128, 0.1, 5e-4, seed, 12000, 2000);
        var code = Train(device, dataFolder, settings, output);
        if (code != 0) return code;

        _console.Write(new Rule("[bold]3. Evaluation of the checkpoint[/]").LeftJustified());
        var checkpoint = CheckpointPath(null, output);
        code = Eval(device, dataFolder, checkpoint, 2000);
        if (code != 0) return code;

        _console.Write(new Rule("[bold]4. A prediction[/]").LeftJustified());
        var pictures = Path.Combine(output, "examples");
        Directory.CreateDirectory(pictures);
        using (var data = FashionMnist.Load(dataFolder))
        {
            foreach (var i in new[] { 0, 1, 2 })
            {
                var label = FashionMnist.Classes[data.TestLabels[i].item<long>()];
                using var image = data.TestImages[i];
                Images.SavePng(image, Path.Combine(pictures, $"test{i}-{label.Replace('/', '-').Replace(' ', '-').ToLowerInvariant()}.png"));
            }
        }
        _console.MarkupLine($"Three test images written to {Markup.Escape(pictures)} (their true class is in the file name); `predict` reads them back:");
        code = Predict(device, new[] { pictures }, checkpoint, 3);
        if (code != 0) return code;

        _console.Write(new Rule("[bold]5. Serving: ONNX[/]").LeftJustified());
        var model = Path.Combine(output, OnnxFile);
        code = Export(checkpoint, model, 17);
        if (code != 0) return code;
        code = Predict(device, new[] { pictures }, checkpoint, 3, model);
        _console.MarkupLine("Train on the full data with [bold]dotnet run --project Sample -- train[/] (see --help).");
        return code;
    }

    private int Train(torch.Device device, string? dataFolder, TrainSettings settings, string output)
    {
        torch.manual_seed(settings.Seed);
        using var data = FashionMnist.Load(dataFolder);
        _console.MarkupLine($"Data: {Markup.Escape(data.Source)}.");
        Directory.CreateDirectory(output);
        var checkpointPath = CheckpointPath(null, output);
        using var network = new ResNet20();
        network.to(device);
        var trainCount = Math.Min(data.TrainCount, settings.TrainLimit ?? long.MaxValue);
        _console.MarkupLine($"Training ResNet20 on {trainCount:N0} images for {settings.Epochs} epoch(s), batch {settings.BatchSize}, peak learning rate {settings.LearningRate.ToString(CultureInfo.InvariantCulture)}, on {device.type.ToString().ToLowerInvariant()}. Ctrl+C stops after the current batch and keeps the last epoch's checkpoint.");

        var table = new Table().AddColumns("epoch", "train loss", "train acc", "test loss", "test acc", "time", "images/s");
        List<EpochResult> results = new();
        _console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var tasks = Enumerable.Range(1, settings.Epochs).Select(e => ctx.AddTask($"epoch {e}/{settings.Epochs}", autoStart: e == 1)).ToList();
                results = Trainer.Train(network, data, settings, device,
                    (epoch, batch, batches, loss, accuracy, speed) =>
                    {
                        var task = tasks[epoch - 1];
                        if (!task.IsStarted) task.StartTask();
                        task.MaxValue = batches;
                        task.Value = batch;
                        task.Description = FormattableString.Invariant($"epoch {epoch}/{settings.Epochs}  loss {loss:0.000}  acc {100 * accuracy:0.0}%  {speed:0} img/s");
                    },
                    result =>
                    {
                        tasks[result.Epoch - 1].StopTask();
                        SaveCheckpoint(network, checkpointPath, result);
                        table.AddRow(result.Epoch.ToString(CultureInfo.InvariantCulture), F(result.TrainLoss), P(result.TrainAccuracy),
                            F(result.TestLoss), P(result.TestAccuracy), $"{result.Seconds:0.0} s", $"{result.ImagesPerSecond:0}");
                    },
                    _cancel);
            });
        _console.Write(table);
        if (results.Count > 0)
        {
            var curves = Path.Combine(output, CurvesFile);
            Curves.Save(results, curves);
            _console.MarkupLine($"Checkpoint (epoch {results[^1].Epoch}, test accuracy {P(results[^1].TestAccuracy)}): {Markup.Escape(checkpointPath)}");
            _console.MarkupLine($"Curves: {Markup.Escape(curves)}");
        }
        if (_cancel.IsCancellationRequested)
        {
            _console.MarkupLine(results.Count > 0
                ? $"[yellow]Interrupted.[/] The checkpoint of epoch {results[^1].Epoch} is intact."
                : "[yellow]Interrupted[/] before the first epoch ended; no checkpoint was written.");
            return 130;
        }
        return 0;
    }

    private static void SaveCheckpoint(ResNet20 network, string path, EpochResult result)
    {
        // Safetensors.Write writes beside the file and renames it into place: an interruption never leaves half a checkpoint.
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["architecture"] = Architecture,
            ["dataset"] = "fashion-mnist",
            ["epoch"] = result.Epoch.ToString(CultureInfo.InvariantCulture),
            ["test_accuracy"] = result.TestAccuracy.ToString("0.0000", CultureInfo.InvariantCulture),
        };
        Safetensors.Write(path, network.state_dict(), metadata);
    }

    private ResNet20 LoadNetwork(string path, torch.Device device)
    {
        if (!File.Exists(path)) throw new SampleException($"{path}: no checkpoint there. Train one first (train), or pass --checkpoint.");
        var metadata = Safetensors.ReadMetadata(path);
        if (metadata.TryGetValue("architecture", out var architecture) && architecture != Architecture)
            throw new SampleException($"{path} holds weights for {architecture}, not {Architecture}. Pass a checkpoint written by this sample's train command.");
        var network = new ResNet20();
        try
        {
            Safetensors.Load(network, path);
        }
        catch
        {
            network.Dispose();
            throw;
        }
        network.to(device);
        network.eval();
        return network;
    }

    private int Eval(torch.Device device, string? dataFolder, string checkpointPath, long? limit)
    {
        using var network = LoadNetwork(checkpointPath, device);
        using var data = FashionMnist.Load(dataFolder);
        _console.MarkupLine($"Data: {Markup.Escape(data.Source)}.");
        var (loss, accuracy, perClass) = Trainer.Evaluate(network, data, limit, device);
        var table = new Table().AddColumns("class", "accuracy");
        for (var c = 0; c < 10; c++) table.AddRow(FashionMnist.Classes[c], P(perClass[c]));
        table.AddRow("[bold]all[/]", $"[bold]{P(accuracy)}[/]");
        _console.Write(table);
        _console.MarkupLine($"Test loss {F(loss)}, accuracy {P(accuracy)} on {Math.Min(data.TestCount, limit ?? long.MaxValue):N0} images ({Markup.Escape(checkpointPath)}).");
        return 0;
    }

    private int Export(string checkpointPath, string path, int opset)
    {
        using var network = LoadNetwork(checkpointPath, torch.CPU);
        network.FuseForInference();
        OnnxExport export;
        try
        {
            export = network.ExportOnnx(path, opset);
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new SampleException(e.Message.Split(" (Parameter")[0]);
        }
        foreach (var warning in export.Warnings) _console.MarkupLine($"[yellow]warning:[/] {Markup.Escape(warning)}");
        _console.MarkupLine(Markup.Escape($"Wrote {export.Path}: opset {export.Opset}, {export.Nodes} nodes, {export.Initializers} initializers; input [N, 1, H, W], output logits [N, 10]."));
        _console.MarkupLine($"Run it on ONNX Runtime: predict <images> --onnx {Markup.Escape(export.Path)}");
        return 0;
    }

    private int Predict(torch.Device device, string[] inputs, string checkpointPath, int top, string? onnxModel = null)
    {
        var files = new List<string>();
        foreach (var input in inputs)
        {
            if (Directory.Exists(input))
            {
                files.AddRange(Directory.EnumerateFiles(input)
                    .Where(f => f.EndsWith(".png", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".jpg", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".jpeg", StringComparison.OrdinalIgnoreCase))
                    .OrderBy(f => f, StringComparer.Ordinal));
            }
            else if (File.Exists(input)) files.Add(input);
            else throw new SampleException($"{input}: no such file or folder.");
        }
        if (files.Count == 0) throw new SampleException($"{string.Join(", ", inputs)}: no PNG or JPEG files there.");
        Func<torch.Tensor, float[]> classify;
        IDisposable owner;
        if (onnxModel is not null)
        {
            if (!File.Exists(onnxModel)) throw new SampleException($"{onnxModel}: no such ONNX model. Write one with the export command.");
            Microsoft.ML.OnnxRuntime.InferenceSession session;
            try
            {
                session = new Microsoft.ML.OnnxRuntime.InferenceSession(onnxModel);
            }
            catch (Microsoft.ML.OnnxRuntime.OnnxRuntimeException e)
            {
                throw new SampleException($"{onnxModel} is not an ONNX model ONNX Runtime can load: {e.Message.Split('\n')[0]}");
            }
            owner = session;
            classify = input =>
            {
                var tensor = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(input.contiguous().data<float>().ToArray(), new[] { 1, 1, 28, 28 });
                using var results = session.Run(new[] { Microsoft.ML.OnnxRuntime.NamedOnnxValue.CreateFromTensor("input", tensor) });
                var logits = results.First().AsEnumerable<float>().ToArray();
                var max = logits.Max();
                var exp = logits.Select(l => Math.Exp(l - max)).ToArray();
                var sum = exp.Sum();
                return exp.Select(e => (float)(e / sum)).ToArray();
            };
            _console.MarkupLine($"Running {Markup.Escape(onnxModel)} on ONNX Runtime.");
        }
        else
        {
            var torchNetwork = LoadNetwork(checkpointPath, device);
            owner = torchNetwork;
            classify = input =>
            {
                using var noGrad = torch.no_grad();
                using var logits = torchNetwork.call(input);
                using var probabilities = torch.nn.functional.softmax(logits, 1).cpu();
                return probabilities[0].data<float>().ToArray();
            };
        }
        using var _ = owner;
        var table = new Table().AddColumns("image", "prediction");
        top = Math.Min(top, 10);
        foreach (var file in files)
        {
            var (pixels, inverted) = Images.Load(file);
            using (pixels)
            using (var input = FashionMnist.Normalize(pixels, onnxModel is null ? device : torch.CPU))
            {
                var p = classify(input);
                var best = Enumerable.Range(0, 10).OrderByDescending(i => p[i]).Take(top)
                    .Select(i => FormattableString.Invariant($"{FashionMnist.Classes[i]} {100 * p[i]:0.0}%"));
                table.AddRow(Markup.Escape(Path.GetFileName(file)) + (inverted ? " [grey](inverted)[/]" : ""), Markup.Escape(string.Join(", ", best)));
            }
        }
        _console.Write(table);
        return 0;
    }

    private int Bench(torch.Device device, long seed)
    {
        torch.manual_seed(seed);
        var table = new Table().AddColumns("network", "batch", "median ms", "images/s");
        void Time(torch.nn.Module<torch.Tensor, torch.Tensor> network, string name, long[] shape)
        {
            using var _ = network;
            network.to(device);
            network.eval();
            using var input = torch.randn(shape, device: device);
            using var mode = torch.inference_mode();
            network.call(input).Dispose();
            var times = new List<double>();
            for (var i = 0; i < 5 && !_cancel.IsCancellationRequested; i++)
            {
                var clock = Stopwatch.StartNew();
                network.call(input).Dispose();
                if (device.type == DeviceType.CUDA) torch.cuda.synchronize();
                times.Add(clock.Elapsed.TotalMilliseconds);
            }
            var median = times.OrderBy(t => t).ElementAt(times.Count / 2);
            table.AddRow(name, shape[0].ToString(CultureInfo.InvariantCulture), $"{median:0.0}", $"{shape[0] / (median / 1e3):0}");
        }
        Time(new ResNet20(), "ResNet20 (1×28×28)", new long[] { 256, 1, 28, 28 });
        Time(new ResNet50(), "ResNet50 (3×224×224)", new long[] { 8, 3, 224, 224 });
        _console.Write(table);
        _console.MarkupLine("Inference mode, 5 runs after one warm-up, median. The benchmark project measures more carefully: dotnet run -c Release --project Benchmarks.");
        return 0;
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
