using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.Json;
using TorchSharp;

namespace ResNetGen.DeviceCheck;

/// <summary>One timed case: a model at a batch size, inference or a training step, a layout, a precision.</summary>
/// <param name="Mode">"infer" (eval, no grad) or "train" (forward, cross-entropy, backward, SGD step with momentum).</param>
/// <param name="Layout">"nchw" or "channels-last".</param>
/// <param name="Precision">"fp32" (TF32 off), "tf32" (TF32 on for cuBLAS and cuDNN) or "bf16" (Precision.BFloat16: mixed, float32 weights).</param>
/// <param name="Folded">Inference through FuseForInference.</param>
internal sealed record SpeedCase(string Model, int Batch, int Size, string Mode, string Layout, string Precision, bool Folded = false)
{
    public string Key => $"{Model}/b{Batch}/{Mode}/{Layout}/{Precision}{(Folded ? "/folded" : "")}";
}

/// <summary>
/// The .NET side of the speed run: builds the generated network of a case on the device and times it. As a server
/// (<c>speed-server</c>) it reads one JSON request per line on standard input and answers one JSON line on standard
/// output, so that the driver (gpu_speed.py) can interleave its cases with PyTorch's in one run.
/// </summary>
internal sealed class Speed : IDisposable
{
    private readonly torch.Device _device;
    private readonly Dictionary<string, (torch.nn.Module<torch.Tensor, torch.Tensor> Network, Sgd? Optimizer)> _built = new();

    public Speed(torch.Device device, bool cudnnBenchmark)
    {
        _device = device;
        if (device.type == DeviceType.CUDA) LibTorch.TrySetCuDnnBenchmark(cudnnBenchmark);
    }

    /// <summary>Serves requests until standard input ends: {"case": {...}, "warmup": W, "iterations": N} → {"times_ms": [...]}.</summary>
    public int Serve(TextReader input, TextWriter output)
    {
        output.WriteLine(JsonSerializer.Serialize(new { ready = true, libtorch = LibTorch.Describe().ToString(), device = _device.ToString() }));
        output.Flush();
        string? line;
        while ((line = input.ReadLine()) is not null)
        {
            if (line.Trim().Length == 0) continue;
            object answer;
            try
            {
                using var request = JsonDocument.Parse(line);
                var root = request.RootElement;
                if (root.TryGetProperty("quit", out _)) break;
                var c = JsonSerializer.Deserialize<SpeedCase>(root.GetProperty("case").GetRawText(), new JsonSerializerOptions { PropertyNameCaseInsensitive = true })
                        ?? throw new ArgumentException("no case");
                if (root.TryGetProperty("release", out _))
                {
                    Release(c);
                    answer = new { released = c.Key };
                }
                else answer = new { key = c.Key, times_ms = Time(c, root.GetProperty("warmup").GetInt32(), root.GetProperty("iterations").GetInt32()) };
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                answer = new { error = $"{e.GetType().Name}: {e.Message.Split('\n')[0]}" };
            }
            output.WriteLine(JsonSerializer.Serialize(answer));
            output.Flush();
        }
        return 0;
    }

    private static string NetworkKey(SpeedCase c) => $"{c.Model}/{c.Mode}/{c.Layout}/{c.Precision}/{c.Folded}";

    private void Release(SpeedCase c)
    {
        if (_built.Remove(NetworkKey(c), out var built)) built.Network.Dispose();
        GC.Collect();
        GC.WaitForPendingFinalizers();
    }

    /// <summary>Times <paramref name="iterations"/> runs of the case after <paramref name="warmup"/>, each synchronised with the device.</summary>
    public double[] Time(SpeedCase c, int warmup, int iterations)
    {
        if (c.Mode is not ("infer" or "train")) throw new ArgumentException($"mode '{c.Mode}': use infer or train");
        if (c.Layout is not ("nchw" or "channels-last")) throw new ArgumentException($"layout '{c.Layout}': use nchw or channels-last");
        if (c.Precision is not ("fp32" or "tf32" or "bf16")) throw new ArgumentException($"precision '{c.Precision}': use fp32, tf32 or bf16");
        if (c.Folded && c.Mode != "infer") throw new ArgumentException("only inference folds");
        if (_device.type == DeviceType.CUDA)
        {
            var tf32 = c.Precision == "tf32";
            torch.backends.cuda.matmul.allow_tf32 = tf32;
            torch.backends.cudnn.allow_tf32 = tf32;
        }
        var key = NetworkKey(c);
        if (!_built.TryGetValue(key, out var built))
        {
            var model = Models.Select(c.Model).Single();
            torch.manual_seed(1);
            var network = model.Create();
            network.to(_device);
            var net = (IResNet)network;
            net.ActivationLayout = c.Layout == "channels-last" ? ActivationLayout.ChannelsLast : ActivationLayout.AsGiven;
            net.Precision = c.Precision == "bf16" ? Precision.BFloat16 : Precision.Float32;
            if (c.Mode == "infer")
            {
                network.eval();
                if (c.Folded) net.FuseForInference();
            }
            else network.train();
            built = (network, c.Mode == "train" ? new Sgd(network.parameters(), 0.01, 0.9) : null);
            _built[key] = built;
        }
        using var scope = torch.NewDisposeScope();
        var generator = new torch.Generator(3);
        var input = torch.randn(new long[] { c.Batch, 3, c.Size, c.Size }, generator: generator).to(_device);
        // The caller's input as the layout asks: a channels-last tensor, as PyTorch's channels-last recipe passes it.
        if (c.Layout == "channels-last") input = TensorLayout.ForCompute(input, ActivationLayout.ChannelsLast);
        var labels = torch.randint(0, 1000, new long[] { c.Batch }, generator: generator).to(_device);
        var times = new List<double>();
        for (var i = 0; i < warmup + iterations; i++)
        {
            Synchronize();
            var clock = Stopwatch.StartNew();
            using (var step = torch.NewDisposeScope())
            {
                if (built.Optimizer is null)
                {
                    using var noGrad = torch.no_grad();
                    built.Network.call(input);
                }
                else
                {
                    built.Optimizer.ZeroGrad();
                    var logits = built.Network.call(input);
                    torch.nn.functional.cross_entropy(logits, labels).backward();
                    built.Optimizer.Step();
                }
                Synchronize();
            }
            if (i >= warmup) times.Add(clock.Elapsed.TotalMilliseconds);
        }
        return times.ToArray();
    }

    private void Synchronize()
    {
        if (_device.type == DeviceType.CUDA) torch.cuda.synchronize(_device);
    }

    public void Dispose()
    {
        foreach (var (network, _) in _built.Values) network.Dispose();
        _built.Clear();
    }
}

/// <summary>
/// SGD with momentum as torch.optim.SGD computes it (buf = momentum·buf + grad; p −= lr·buf), two in-place kernels per
/// parameter, its scalars held for the optimiser's life (no temporary the garbage collector could free mid-call).
/// </summary>
internal sealed class Sgd
{
    private readonly TorchSharp.Modules.Parameter[] _parameters;
    private readonly torch.Tensor?[] _buffers;
    private readonly Scalar _momentum;
    private readonly Scalar _minusLr;
    private readonly Scalar _one = 1.0.ToScalar();

    public Sgd(IEnumerable<TorchSharp.Modules.Parameter> parameters, double lr, double momentum)
    {
        _parameters = parameters.ToArray();
        _buffers = new torch.Tensor?[_parameters.Length];
        _momentum = momentum.ToScalar();
        _minusLr = (-lr).ToScalar();
    }

    public void ZeroGrad()
    {
        foreach (var p in _parameters) p.grad?.zero_();
    }

    public void Step()
    {
        using var noGrad = torch.no_grad();
        for (var i = 0; i < _parameters.Length; i++)
        {
            var grad = _parameters[i].grad;
            if (grad is null) continue;
            if (_buffers[i] is null) _buffers[i] = grad.detach().clone().DetachFromDisposeScope();
            else _buffers[i]!.mul_(_momentum).add_(grad, _one);
            _parameters[i].add_(_buffers[i]!, _minusLr);
        }
    }
}
