using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using TorchSharp;

namespace ResNetGen.DeviceCheck;

/// <summary>
/// The correctness check on a device: each model's eval and train-mode forward and backward there against the same network
/// on the CPU in float64 — in float64 (within 1e-10) and in float32 with TF32 off (the suite's rules: 1e-4 of the largest
/// output, 2e-3 of the part that depends on the input; or twice the CPU's own float32 distance from float64 where that
/// is larger) — then the folded network, channels-last, ForwardFeatures and bfloat16 on the device, and drop path's
/// statistics there.
/// </summary>
internal sealed class Check
{
    public const double Float64Tolerance = 1e-10;
    public const double Float32Tolerance = 1e-4;
    public const double Contrast = 2e-3;
    /// <summary>
    /// bfloat16 (8 bits kept) through a deep network with random weights: reported, and failed only where it is garbage
    /// (half the largest logit). That Precision computes as PyTorch's autocast does is shown against PyTorch on the CPU.
    /// </summary>
    public const double BFloat16Tolerance = 0.5;

    private readonly torch.Device _device;
    private readonly IReadOnlyList<Model> _models;
    private readonly int _size;
    private readonly int _batch;
    private readonly TextWriter _log;
    private readonly List<string[]> _rows = new();
    private readonly List<string> _failures = new();

    public Check(torch.Device device, IReadOnlyList<Model> models, int size, int batch, TextWriter log)
    {
        _device = device;
        _models = models;
        _size = size;
        _batch = batch;
        _log = log;
    }

    public static readonly string[] Columns =
        { "model", "eval f64", "train f64", "eval f32", "train f32", "grads f32", "folded", "channels-last", "features", "bf16", "seconds" };

    /// <summary>Runs every model; writes the table (markdown) to <paramref name="report"/> if given; 0 when all pass.</summary>
    public int Run(string? report)
    {
        if (_device.type == DeviceType.CUDA)
        {
            torch.backends.cuda.matmul.allow_tf32 = false;
            torch.backends.cudnn.allow_tf32 = false;
        }
        _log.WriteLine($"device check on {_device}: {_models.Count} models, input [{_batch}, 3, {_size}, {_size}]; libtorch {LibTorch.Describe()}");
        foreach (var gpu in LibTorch.CudaDevices()) _log.WriteLine("  " + gpu);
        foreach (var model in _models)
        {
            var clock = Stopwatch.StartNew();
            try
            {
                _rows.Add(CheckModel(model, clock));
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                _failures.Add($"{model.Name}: {e.GetType().Name}: {e.Message.Split('\n')[0]}");
                _rows.Add(new[] { model.Name, "error: " + e.Message.Split('\n')[0] });
            }
            _log.WriteLine(string.Join(" | ", _rows[^1]));
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        foreach (var rate in _models.Where(m => m.DropPath > 0).Select(m => m.DropPath).Distinct())
        {
            try
            {
                _rows.Add(DropPathStatistics(rate));
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                _failures.Add($"drop path {rate}: {e.GetType().Name}: {e.Message.Split('\n')[0]}");
            }
        }

        var table = Table();
        _log.WriteLine();
        _log.WriteLine(table);
        var verdict = _failures.Count == 0
            ? $"PASS: all {_models.Count} models agree on {_device} with the CPU."
            : $"FAIL: {_failures.Count} check(s) failed on {_device}:{Environment.NewLine}  " + string.Join(Environment.NewLine + "  ", _failures);
        _log.WriteLine(verdict);
        if (report is not null) File.WriteAllText(report, table + Environment.NewLine + verdict + Environment.NewLine);
        return _failures.Count == 0 ? 0 : 1;
    }

    private string Table()
    {
        var text = new StringBuilder();
        text.AppendLine("| " + string.Join(" | ", Columns) + " |");
        text.AppendLine("|" + string.Concat(Columns.Select(_ => " --- |")));
        foreach (var row in _rows) text.AppendLine("| " + string.Join(" | ", row) + " |");
        text.AppendLine();
        text.AppendLine($"Each cell: the largest error over the compared tensors as a fraction of its bound (≤ 1 passes; ✗ marks a failure). " +
                        $"Bounds: float64 {Float64Tolerance:G2} of the largest value; float32 (TF32 off) {Float32Tolerance:G2} of the largest value and " +
                        $"{Contrast:G2} of the input-dependent part, or twice the CPU's own float32 distance from float64 where that is larger " +
                        $"(so the CPU against itself gives at most 0.50; deep networks and train mode at batch {_batch} are ill-conditioned); bf16 {BFloat16Tolerance:G2}.");
        return text.ToString();
    }

    private string[] CheckModel(Model model, Stopwatch clock)
    {
        using var scope = torch.NewDisposeScope();
        var cpu = Deterministic(model);
        var input = torch.randn(new long[] { _batch, 3, _size, _size }, generator: new torch.Generator(7));
        var random = model.DropPath > 0; // train mode draws its own masks on each side: eval only

        // The reference: the CPU in float64.
        var reference = Copy(model, cpu, torch.CPU, torch.float64);
        var ref64 = Forward(reference, input.to(torch.float64), train: false);
        var refFeatures = Features(reference, input.to(torch.float64));
        var upstream = torch.randn(ref64.shape, generator: new torch.Generator(8));
        var (refTrain, refGrads, refBuffers) = random ? default : TrainStep(reference, input.to(torch.float64), upstream.to(torch.float64));

        // calibration: the same tensors computed in float32 on the CPU, where a comparison's bound is "no further from
        // float64 than the CPU's own float32, twice over" rather than the fixed bound alone.
        string Cell(string what, IEnumerable<(string Name, torch.Tensor Expected, torch.Tensor Actual)> pairs, double tolerance, bool contrast,
            IReadOnlyDictionary<string, torch.Tensor>? calibration = null)
        {
            var worst = 0.0;
            string? where = null;
            foreach (var (name, expected, actual) in pairs)
            {
                var ratio = Ratio(expected, actual, tolerance, contrast);
                if (calibration is not null && !double.IsNaN(ratio)) ratio /= Math.Max(1, 2 * Ratio(expected, calibration[name], tolerance, contrast));
                if (double.IsNaN(ratio) || ratio > worst) (worst, where) = (double.IsNaN(ratio) ? double.PositiveInfinity : ratio, name);
            }
            var failed = worst > 1;
            if (failed) _failures.Add($"{model.Name} {what}: {worst:G3} × the bound at {where}");
            return (double.IsInfinity(worst) ? "NaN/inf" : worst.ToString("0.00", CultureInfo.InvariantCulture)) + (failed ? " ✗" : "");
        }

        // float64 on the device.
        var dev64 = Copy(model, cpu, _device, torch.float64);
        var eval64 = Cell("eval float64", new[] { ("logits", ref64, Forward(dev64, input.to(torch.float64).to(_device), train: false)) }, Float64Tolerance, contrast: false);
        string train64 = "—";
        if (!random)
        {
            var (o, g, b) = TrainStep(dev64, input.to(torch.float64).to(_device), upstream.to(torch.float64).to(_device));
            train64 = Cell("train float64", Pairs(refTrain, o, refGrads, g, refBuffers, b), Float64Tolerance, contrast: false);
        }
        dev64.Dispose();

        // float32, TF32 off, on the device.
        // The CPU's own float32, whose distance from float64 calibrates each float32 bound: a tensor passes within the fixed
        // bound, or within twice the CPU's own distance where that is larger. Deep networks need it: BiT-101's last stage
        // (unnormalised, in pre-activation networks) is further than 1e-4 of its largest from float64 on the CPU itself, and
        // train mode at batch 2 is ill-conditioned (batch-norm over a few values) — deep networks' outputs by more than
        // 1e-4, some gradients by tens of percent.
        using var cpu32 = Copy(model, cpu, torch.CPU, torch.float32);
        var cpuEval = new Dictionary<string, torch.Tensor> { ["logits"] = Forward(cpu32, input, train: false) };
        var cpuFeatures = Features(cpu32, input).Select((f, i) => KeyValuePair.Create($"feature {i}", f)).ToDictionary(p => p.Key, p => p.Value);
        var dev32 = Copy(model, cpu, _device, torch.float32);
        var x32 = input.to(_device);
        var eval32 = Cell("eval float32", new[] { ("logits", ref64, Forward(dev32, x32, train: false)) }, Float32Tolerance, contrast: true, cpuEval);
        string train32 = "—", grads32 = "—";
        if (!random)
        {
            var (o, g, b) = TrainStep(dev32, x32, upstream.to(_device));
            var (co, cg, cb) = TrainStep(cpu32, input, upstream);
            var calibration = new Dictionary<string, torch.Tensor>(cg.Select(p => KeyValuePair.Create("grad " + p.Key, p.Value))
                .Concat(cb).Append(KeyValuePair.Create("logits", co)));
            train32 = Cell("train float32", new[] { ("logits", refTrain, o) }.Concat(b.Select(p => (p.Key, refBuffers[p.Key], p.Value))), Float32Tolerance,
                contrast: true, calibration);
            grads32 = Cell("gradients float32", g.Select(p => ("grad " + p.Key, refGrads[p.Key], p.Value)), Float32Tolerance, contrast: false, calibration);
            // The train step moved the running statistics: put them back to the reference's starting values.
            Restore(dev32, cpu);
        }
        var net = (IResNet)dev32;
        var features = Cell("features float32", Features(dev32, x32).Select((f, i) => ($"feature {i}", refFeatures[i], f)), Float32Tolerance, contrast: true, cpuFeatures);
        net.ActivationLayout = ActivationLayout.ChannelsLast;
        var channelsLast = Cell("channels-last float32", new[] { ("logits", ref64, Forward(dev32, x32, train: false)) }, Float32Tolerance, contrast: true, cpuEval);
        net.ActivationLayout = ActivationLayout.AsGiven;
        net.Precision = Precision.BFloat16;
        var bf16 = Cell("bfloat16", new[] { ("logits", ref64, Forward(dev32, x32, train: false)) }, BFloat16Tolerance, contrast: false);
        net.Precision = Precision.Float32;
        net.FuseForInference();
        var folded = Cell("folded float32", new[] { ("logits", ref64, Forward(dev32, x32, train: false)) }, Float32Tolerance, contrast: true, cpuEval);
        dev32.Dispose();
        reference.Dispose();
        cpu.Dispose();
        return new[] { model.Name, eval64, train64, eval32, train32, grads32, folded, channelsLast, features, bf16, clock.Elapsed.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture) };
    }

    private static IEnumerable<(string, torch.Tensor, torch.Tensor)> Pairs(torch.Tensor refOut, torch.Tensor output, Dictionary<string, torch.Tensor> refGrads,
        Dictionary<string, torch.Tensor> grads, Dictionary<string, torch.Tensor> refBuffers, Dictionary<string, torch.Tensor> buffers) =>
        new[] { ("logits", refOut, output) }
            .Concat(grads.Select(p => ("grad " + p.Key, refGrads[p.Key], p.Value)))
            .Concat(buffers.Select(p => (p.Key, refBuffers[p.Key], p.Value)));

    /// <summary>
    /// The network as built (its own initialisation, seeded), with every batch-norm's statistics, weight and bias drawn
    /// away from their identity values, so that eval mode, the fold and the zero-initialised residual branches all compute
    /// something.
    /// </summary>
    private static torch.nn.Module<torch.Tensor, torch.Tensor> Deterministic(Model model)
    {
        torch.manual_seed(1234);
        var network = model.Create();
        using var noGrad = torch.no_grad();
        var generator = new torch.Generator(99);
        // Scalars held until the ops are done: a temporary one can be freed while libtorch reads it (see Steps.One).
        using var tenth = 0.1.ToScalar();
        using var half = 0.5.ToScalar();
        foreach (var (name, p) in network.named_parameters())
        {
            if (p.dim() == 1 && name.EndsWith("weight", StringComparison.Ordinal)) p.copy_(torch.randn(p.shape, generator: generator).mul_(tenth).add_(Steps.One, Steps.One));
            else if (name.EndsWith("bias", StringComparison.Ordinal)) p.copy_(torch.randn(p.shape, generator: generator).mul_(tenth));
        }
        foreach (var (name, b) in network.named_buffers())
        {
            if (name.EndsWith("running_mean", StringComparison.Ordinal)) b.copy_(torch.randn(b.shape, generator: generator).mul_(tenth));
            else if (name.EndsWith("running_var", StringComparison.Ordinal)) b.copy_(torch.rand(b.shape, generator: generator).add_(half, Steps.One));
        }
        return network;
    }

    /// <summary>A new network of the model on <paramref name="device"/> in <paramref name="dtype"/>, its tensors copied from <paramref name="source"/>.</summary>
    private static torch.nn.Module<torch.Tensor, torch.Tensor> Copy(Model model, torch.nn.Module<torch.Tensor, torch.Tensor> source, torch.Device device, torch.ScalarType dtype)
    {
        var copy = model.Create();
        copy.to(device); // moved first, then loaded: weights load into a network already on the device
        Restore(copy, source);
        if (dtype != torch.ScalarType.Float32) copy.to(dtype);
        return copy;
    }

    /// <summary>Copies every parameter and buffer of <paramref name="source"/> into <paramref name="target"/>, across devices and dtypes.</summary>
    private static void Restore(torch.nn.Module target, torch.nn.Module source)
    {
        using var noGrad = torch.no_grad();
        var from = source.state_dict();
        foreach (var (name, tensor) in target.state_dict()) tensor.copy_(from[name]);
    }

    private static torch.Tensor Forward(torch.nn.Module<torch.Tensor, torch.Tensor> network, torch.Tensor input, bool train)
    {
        network.train(train);
        using var noGrad = torch.no_grad();
        return network.call(input).cpu();
    }

    /// <summary>Train mode: the output, each parameter's gradient of (output · upstream).sum(), and the running statistics after.</summary>
    private static (torch.Tensor Output, Dictionary<string, torch.Tensor> Grads, Dictionary<string, torch.Tensor> Buffers) TrainStep(
        torch.nn.Module<torch.Tensor, torch.Tensor> network, torch.Tensor input, torch.Tensor upstream)
    {
        network.train();
        network.zero_grad();
        var output = network.call(input);
        output.mul(upstream).sum().backward();
        var grads = network.named_parameters().Where(p => p.parameter.grad is not null).ToDictionary(p => p.name, p => p.parameter.grad!.cpu());
        var buffers = network.named_buffers().Where(b => b.name.EndsWith("running_mean", StringComparison.Ordinal) || b.name.EndsWith("running_var", StringComparison.Ordinal))
            .ToDictionary(b => b.name, b => b.buffer.cpu());
        network.zero_grad();
        return (output.detach().cpu(), grads, buffers);
    }

    /// <summary>The generated ForwardFeatures' outputs (the stem's and each stage's), in order, on the CPU.</summary>
    private static List<torch.Tensor> Features(torch.nn.Module<torch.Tensor, torch.Tensor> network, torch.Tensor input)
    {
        network.eval();
        using var noGrad = torch.no_grad();
        var method = network.GetType().GetMethod("ForwardFeatures") ?? throw new InvalidOperationException($"{network.GetType().Name} has no ForwardFeatures");
        var features = method.Invoke(network, new object[] { input })!;
        var tensors = features.GetType().GetProperties().Where(p => p.PropertyType == typeof(torch.Tensor)).Select(p => ((torch.Tensor)p.GetValue(features)!).cpu()).ToList();
        return tensors;
    }

    /// <summary>
    /// The error of <paramref name="actual"/> as a fraction of its bound: max |Δ| over <paramref name="tolerance"/> × max
    /// |expected|, and with <paramref name="contrast"/> also the batch-contrast rule; NaN if anything is not finite.
    /// </summary>
    internal static double Ratio(torch.Tensor expected, torch.Tensor actual, double tolerance, bool contrast)
    {
        using var scope = torch.NewDisposeScope();
        var e = expected.to(torch.float64).cpu();
        var a = actual.to(torch.float64).cpu();
        if (!e.shape.SequenceEqual(a.shape)) throw new InvalidOperationException($"shapes differ: [{string.Join(", ", e.shape)}] and [{string.Join(", ", a.shape)}]");
        if (!a.isfinite().all().item<bool>() || !e.isfinite().all().item<bool>()) return double.NaN;
        var scale = e.abs().max().item<double>();
        var worst = (e - a).abs().max().item<double>();
        var ratio = scale == 0 ? (worst == 0 ? 0 : double.PositiveInfinity) : worst / (tolerance * scale);
        if (!contrast || e.dim() < 2 || e.shape[0] < 2) return ratio;
        var ec = e - e.mean(new long[] { 0 }, keepdim: true);
        var ac = a - a.mean(new long[] { 0 }, keepdim: true);
        var spread = ec.abs().max().item<double>();
        var bound = Math.Max(Contrast * spread, 1e-2 * tolerance * scale);
        return Math.Max(ratio, bound == 0 ? 0 : (ec - ac).abs().max().item<double>() / bound);
    }

    /// <summary>
    /// Drop path on the device: over 400,000 samples the dropped fraction is within 4σ of the rate, and the kept ones are
    /// scaled by exactly 1/(1 − rate).
    /// </summary>
    private string[] DropPathStatistics(double rate)
    {
        using var scope = torch.NewDisposeScope();
        const int n = 400_000;
        var x = torch.ones(new long[] { n, 1, 1, 1 }, device: _device);
        var y = Steps.DropPath(x, rate, training: true).cpu().to(torch.float64);
        using var zero = 0.0.ToScalar(); // held: a temporary Scalar can be freed while libtorch reads it
        using var minusOne = (-1.0).ToScalar();
        using var expected = (1 / (1 - rate)).ToScalar();
        var dropped = y.eq(zero).sum().item<long>() / (double)n;
        var kept = y.masked_select(y.ne(zero));
        var scaleError = kept.numel() == 0 ? double.PositiveInfinity : kept.add(expected, minusOne).abs().max().item<double>();
        var sigma = Math.Sqrt(rate * (1 - rate) / n);
        var ok = Math.Abs(dropped - rate) <= 4 * sigma && scaleError <= 1e-6;
        if (!ok) _failures.Add($"drop path {rate}: dropped {dropped:P3} (rate {rate:P0}, 4σ = {4 * sigma:P3}), kept scaled off by {scaleError:G3}");
        return new[] { $"drop path {rate.ToString(CultureInfo.InvariantCulture)} statistics", $"dropped {dropped.ToString("P2", CultureInfo.InvariantCulture)} of {n:N0} (4σ {(4 * sigma).ToString("P2", CultureInfo.InvariantCulture)})",
            $"scale error {scaleError:G2}" + (ok ? "" : " ✗"), "", "", "", "", "", "", "", "" };
    }
}
