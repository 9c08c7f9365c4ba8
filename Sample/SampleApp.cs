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
