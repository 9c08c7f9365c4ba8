using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TorchSharp;

namespace ResNetGen;

/// <summary>How an int8 engine chooses each activation's range from what the calibration batches showed.</summary>
public enum CalibrationMethod
{
    /// <summary>
    /// The range between two quantiles of the values seen (<see cref="OnnxRuntimeOptions.Int8Percentile"/>, 99.999 by
    /// default): a few outliers do not stretch the uint8 step for every other value. The default.
    /// </summary>
    Percentile,

    /// <summary>The smallest and largest value seen: nothing is clipped, at the cost of a coarser step where outliers are rare.</summary>
    MinMax,
}

/// <summary>What an int8 engine's calibration measured and how it quantised: <see cref="OnnxRuntimeEngine.Quantization"/>.</summary>
/// <param name="Method">The calibration method.</param>
/// <param name="Percentile">The percentile <see cref="CalibrationMethod.Percentile"/> used (100 for min-max).</param>
/// <param name="Batches">Calibration batches read.</param>
/// <param name="Pictures">Calibration pictures read.</param>
/// <param name="ReducedRange">Whether weights were kept within ±63 (a CPU without VNNI) instead of ±127.</param>
/// <param name="Tensors">Each quantised activation: its range seen, the range chosen, its scale and zero point.</param>
/// <param name="IntegerNodes">Graph nodes that compute on 8-bit tensors (convolutions, residual adds, pools).</param>
/// <param name="FloatOps">Op types left in float32 between a DequantizeLinear and the next QuantizeLinear (e.g. the classifier's Gemm).</param>
/// <param name="CalibrationTime">How long calibration and quantisation took.</param>
public sealed record Int8Quantization(CalibrationMethod Method, double Percentile, int Batches, long Pictures, bool ReducedRange,
    IReadOnlyList<Int8TensorRange> Tensors, int IntegerNodes, IReadOnlyList<string> FloatOps, TimeSpan CalibrationTime);

/// <summary>One tensor's values over the calibration batches: its extremes and a histogram for quantiles.</summary>
/// <remarks>
/// The histogram covers [−R, R) in <see cref="Bins"/> equal bins, R a power of two; where a batch reaches past R, R
/// doubles and neighbouring bins merge, so one pass over batches of any range keeps a resolution of R / (Bins / 2).
/// </remarks>
internal sealed class RangeCollector
{
    internal const int Bins = 16384;
    private long[]? _histogram;
    private float _radius;

    public float Min { get; private set; } = float.PositiveInfinity;
    public float Max { get; private set; } = float.NegativeInfinity;
    public long Count { get; private set; }

    public void Add(ReadOnlySpan<float> values, bool histogram)
    {
        if (values.IsEmpty) return;
        float min = float.PositiveInfinity, max = float.NegativeInfinity;
        foreach (var v in values)
        {
            if (v < min) min = v;
            if (v > max) max = v;
        }
        Min = Math.Min(Min, min);
        Max = Math.Max(Max, max);
        Count += values.Length;
        if (!histogram) return;
        var reach = Math.Max(Math.Abs(min), Math.Abs(max));
        if (_histogram is null)
        {
            _histogram = new long[Bins];
            _radius = PowerOfTwoAbove(reach);
        }
        while (reach >= _radius) Widen();
        var toBin = Bins / (2 * _radius);
        var h = _histogram;
        foreach (var v in values)
        {
            var bin = (int)((v + _radius) * toBin);
            h[Math.Clamp(bin, 0, Bins - 1)]++;
        }
    }

    private static float PowerOfTwoAbove(float value)
    {
        var r = 1f / 1024;
        while (r <= value) r *= 2;
        return r;
    }

    // Doubles the radius: the old bins fill the middle half, two by two.
    private void Widen()
    {
        var old = _histogram!;
        var wide = new long[Bins];
        for (var i = 0; i < Bins; i++) wide[Bins / 4 + i / 2] += old[i];
        _histogram = wide;
        _radius *= 2;
    }

    /// <summary>The range the method chooses: the extremes, or the quantiles (100 − p)% and p% of the values seen.</summary>
    public (float Low, float High) Range(CalibrationMethod method, double percentile)
    {
        if (Count == 0) return (0, 0);
        if (method == CalibrationMethod.MinMax || _histogram is null) return (Min, Max);
        var tail = (long)Math.Floor(Count * (1 - percentile / 100));
        var width = 2 * _radius / Bins;
        // The lower end: the lower edge of the bin where more than `tail` values lie at or below; the upper end likewise from above.
        long seen = 0;
        var low = Min;
        for (var i = 0; i < Bins; i++)
        {
            seen += _histogram[i];
            if (seen > tail) { low = -_radius + i * width; break; }
        }
        seen = 0;
        var high = Max;
        for (var i = Bins - 1; i >= 0; i--)
        {
            seen += _histogram[i];
            if (seen > tail) { high = -_radius + (i + 1) * width; break; }
        }
        return (Math.Max(low, Min), Math.Min(high, Max));
    }
}

/// <summary>Reads calibration batches through the float32 graph and measures each quantised tensor.</summary>
internal static class Int8Calibrator
{
    public static (Dictionary<string, (float Min, float Max, float Low, float High)> Ranges, int Batches, long Pictures) Measure(
        string network, byte[] calibrationModel, IReadOnlyList<string> tensors, IEnumerable<torch.Tensor> batches, long channels, int? fixedSize,
        OnnxRuntimeOptions options, SessionOptions sessionOptions)
    {
        var histogram = options.Int8Method == CalibrationMethod.Percentile;
        var collectors = tensors.ToDictionary(t => t, _ => new RangeCollector(), StringComparer.Ordinal);
        var outputs = tensors.Where(t => t != "input").ToArray();
        using var session = new InferenceSession(calibrationModel, sessionOptions);
        var count = 0;
        long pictures = 0;
        foreach (var batch in batches)
        {
            using var dense = Validate(network, batch, count, channels, fixedSize);
            count++;
            if (dense.shape[0] == 0) continue;
            unsafe
            {
                var values = new ReadOnlySpan<float>((void*)TensorBytes.Pointer(dense), checked((int)dense.numel()));
                if (collectors.TryGetValue("input", out var input)) input.Add(values, histogram);
                using var inputValue = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Float,
                    dense.shape, TensorBytes.Pointer(dense), dense.numel() * sizeof(float));
                using var runOptions = new RunOptions();
                using var results = session.Run(runOptions, new[] { "input" }, new[] { inputValue }, outputs);
                for (var i = 0; i < outputs.Length; i++)
                    collectors[outputs[i]].Add(results[i].GetTensorDataAsSpan<float>(), histogram);
            }
            pictures += dense.shape[0];
            options.Int8Progress?.Report(pictures);
        }
        if (count == 0)
            throw new ArgumentException($"OnnxRuntimeOptions.Int8Calibration for {network} holds no batches. Pass a few hundred preprocessed pictures as [N, {channels}, H, W] float32 batches, or leave it null for the float32 engine.", "options");
        if (pictures == 0)
            throw new ArgumentException($"OnnxRuntimeOptions.Int8Calibration for {network} holds {count} batch(es) with no pictures in them. Pass a few hundred preprocessed pictures as [N, {channels}, H, W] float32 batches.", "options");
        var ranges = new Dictionary<string, (float, float, float, float)>(StringComparer.Ordinal);
        foreach (var (tensor, collector) in collectors)
        {
            var (low, high) = collector.Range(options.Int8Method, options.Int8Percentile);
            ranges[tensor] = (collector.Min, collector.Max, low, high);
        }
        return (ranges, count, pictures);
    }

    // A calibration batch as a dense float32 CPU tensor the caller disposes, or one error naming the batch and the problem.
    private static torch.Tensor Validate(string network, torch.Tensor? batch, int index, long channels, int? fixedSize)
    {
        var what = $"OnnxRuntimeOptions.Int8Calibration for {network}: batch {index}";
        if (batch is null) throw new ArgumentException($"{what} is null. Pass only tensors of preprocessed pictures.", "options");
        if (batch.IsInvalid) throw new ArgumentException($"{what} was disposed before the engine read it. Keep the batches alive until ToOnnxRuntime returns.", "options");
        if (!torch.is_floating_point(batch))
            throw new ArgumentException($"{what} is {batch.dtype}, not float: calibration needs the network's input as it computes on it (preprocessed and normalised, float32), not raw pixels.", "options");
        NetworkInput.Check(batch, (int)channels, what, fixedSize);
        var dense = TensorBytes.DenseCpu(batch, torch.float32);
        try
        {
            using var finite = dense.isfinite().all();
            if (!finite.item<bool>())
                throw new ArgumentException($"{what} holds NaN or infinite values. Calibrate on finite, preprocessed pictures.", "options");
            return dense;
        }
        catch
        {
            dense.Dispose();
            throw;
        }
    }
}
