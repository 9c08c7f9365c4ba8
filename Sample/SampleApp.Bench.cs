using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using Spectre.Console;
using TorchSharp;

namespace ResNetGen.Sample;

// The sample's bench: a quick speed check of each engine a generated network can be served on.
public sealed partial class SampleApp
{
    private int Bench(torch.Device device, long seed, int batch = 8, int runs = 5)
    {
        torch.manual_seed(seed);
        var table = new Table().AddColumns("network", "engine", "batch", "median ms", "pictures/s", "setup");
        var fastest = new List<string>();
        void Time<T>(Func<T> create, string name, long[] shape) where T : torch.nn.Module<torch.Tensor, torch.Tensor>, IResNet
        {
            using var network = create();
            network.to(device);
            network.eval();
            using var input = torch.randn(shape, device: device);
            var results = new List<(string Engine, double Median)>();
            void Engine(string engine, Func<IDisposable?> setup, Action run)
            {
                if (_cancel.IsCancellationRequested) return;
                var clock = Stopwatch.StartNew();
                using var owned = setup();
                var setupTime = clock.Elapsed.TotalMilliseconds;
                run(); // warm-up
                var times = new List<double>();
                for (var i = 0; i < runs && !_cancel.IsCancellationRequested; i++)
                {
                    clock.Restart();
                    run();
                    if (device.type == DeviceType.CUDA) torch.cuda.synchronize();
                    times.Add(clock.Elapsed.TotalMilliseconds);
                }
                var median = times.OrderBy(t => t).ElementAt(times.Count / 2);
                results.Add((engine, median));
                table.AddRow(name, engine, shape[0].ToString(CultureInfo.InvariantCulture), $"{median:0.0}", $"{shape[0] / (median / 1e3):0}",
                    setupTime < 1 ? "" : FormattableString.Invariant($"{setupTime:0} ms"));
            }
            void Forward()
            {
                using var noGrad = torch.no_grad();
                network.call(input).Dispose();
            }
            Engine("TorchSharp", () => null, Forward);
            Engine("TorchSharp, folded", () =>
            {
                network.FuseForInference();
                return null;
            }, Forward);
            if (device.type == DeviceType.CPU)
            {
                OnnxRuntimeEngine? served = null;
                Engine("ONNX Runtime (engine)", () => served = network.ToOnnxRuntime(), () => served!.forward(input).Dispose());
                // Quantised from four batches of the same random inputs: the speed does not depend on the values (accuracy does: see the README).
                OnnxRuntimeEngine? int8 = null;
                Engine("ONNX Runtime int8 (engine)", () =>
                {
                    var batches = Enumerable.Range(0, 4).Select(_ => torch.randn(shape)).ToList();
                    try
                    {
                        return int8 = network.ToOnnxRuntime(new OnnxRuntimeOptions { Int8Calibration = batches });
                    }
                    finally
                    {
                        foreach (var b in batches) b.Dispose();
                    }
                }, () => int8!.forward(input).Dispose());
            }
            if (results.Count > 0)
            {
                var best = results.OrderBy(r => r.Median).First();
                var torchSharp = results[0].Median;
                fastest.Add(FormattableString.Invariant($"{name}: {best.Engine}, {torchSharp / best.Median:0.00}× TorchSharp's speed"));
            }
        }
        Time(() => new ResNet20(), "ResNet20 (1×28×28)", new long[] { 32L * batch, 1, 28, 28 });
        Time(() => new ResNet50(), "ResNet50 (3×224×224)", new long[] { batch, 3, 224, 224 });
        _console.Write(table);
        foreach (var line in fastest) _console.MarkupLine($"Fastest for {Markup.Escape(line)}.");
        _console.MarkupLine(Markup.Escape(FormattableString.Invariant($"No-grad eval, {runs} runs after one warm-up, median; setup: folding or building the engine (int8: calibrating on random inputs and quantising). CPU: {CpuCaches.Model ?? "unknown"}, {(CpuCaches.HasInt8DotProduct ? "with" : "without")} VNNI.")));
        _console.MarkupLine("The benchmark project measures more carefully (interleaved rounds, TorchSharp's TorchVision models as peers): dotnet run -c Release --project Benchmarks.");
        return _cancel.IsCancellationRequested ? 130 : 0;
    }
}
