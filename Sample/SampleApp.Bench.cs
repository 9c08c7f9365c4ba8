using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using Spectre.Console;
using TorchSharp;

namespace ResNetGen.Sample;

// The sample's bench: a quick speed check.
public sealed partial class SampleApp
{
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
}
