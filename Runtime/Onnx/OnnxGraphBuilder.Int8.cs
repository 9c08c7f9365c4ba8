using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.InteropServices;

namespace ResNetGen;

/// <summary>
/// Where an int8 graph quantises: the tensors between the network's steps that an integer kernel reads or writes (their
/// semantic names, in graph order: what calibration measures), the ReLUs merged into the quantisation before them, the
/// nodes that compute on 8-bit tensors once ONNX Runtime fuses their QDQ pairs, and the max-pools whose output keeps
/// their input's scale.
/// </summary>
internal sealed record Int8Layout(
    IReadOnlyList<string> Tensors,
    IReadOnlyDictionary<string, string> MergedRelus,
    IReadOnlySet<int> IntegerNodes,
    IReadOnlyDictionary<string, string> SharesInput,
    IReadOnlySet<string> NonNegative,
    IReadOnlyList<string> FloatOps);

/// <summary>A quantised tensor's calibrated range and the uint8 scale and zero point made from it.</summary>
/// <param name="Tensor">The graph tensor (<c>input</c>, or a step's result such as <c>x12</c>).</param>
/// <param name="Min">The smallest value seen in calibration.</param>
/// <param name="Max">The largest value seen in calibration.</param>
/// <param name="Low">The range's lower end that the calibration method chose (0 after a merged ReLU).</param>
/// <param name="High">The range's upper end that the calibration method chose.</param>
/// <param name="Scale">The uint8 step: (High − Low) / 255, with 0 inside the range.</param>
/// <param name="ZeroPoint">The uint8 value that stands for 0.</param>
public sealed record Int8TensorRange(string Tensor, float Min, float Max, float Low, float High, float Scale, int ZeroPoint);

public sealed partial class OnnxGraphBuilder
{
    // Nodes ONNX Runtime computes on 8-bit tensors when QDQ pairs surround them: Conv → QLinearConv (uint8 activations,
    // int8 per-channel weights, int32 bias), Add → QLinearAdd, AveragePool → QLinearAveragePool, and MaxPool, which
    // runs on uint8 itself once its input and output share a scale.
    private static readonly HashSet<string> IntegerOps = new(StringComparer.Ordinal) { "Conv", "Add", "MaxPool", "AveragePool" };

    // TensorProto data types beyond FLOAT and INT64.
    private const long Uint8Type = 2, Int8Type = 3, Int32Type = 6;

    /// <summary>
    /// Plans the int8 graph over this (folded) graph. A node computes on integers where it is a convolution, residual
    /// add or pool between two step tensors (a convolution with its weight as an initializer); a step tensor is quantised
    /// where such a node writes or reads it; a ReLU step right after the node that alone feeds it is merged into that
    /// tensor's quantisation (zero point 0, so the uint8 range clamps as the ReLU would). Everything else — a step's inner
    /// tensors (squeeze-excite's and efficient channel attention's gates, a group-norm, the blur filter, the classifier) —
    /// stays float32 between a DequantizeLinear and the next QuantizeLinear.
    /// </summary>
    internal Int8Layout PlanInt8()
    {
        var (resultName, _) = _output ?? throw new InvalidOperationException($"the graph of {_graph} has no output yet: call Output first");
        var initializers = new HashSet<string>(_initializers.Select(i => i.Name), StringComparer.Ordinal);
        var floatWeights = _initializers.Where(i => i.DataType == Float32Type).Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var producers = new Dictionary<string, int>(StringComparer.Ordinal);
        var consumers = new Dictionary<string, List<int>>(StringComparer.Ordinal);
        for (var i = 0; i < _nodes.Count; i++)
        {
            producers[_nodes[i].Output] = i;
            foreach (var input in _nodes[i].Inputs)
            {
                if (!consumers.TryGetValue(input, out var list)) consumers[input] = list = new List<int>();
                list.Add(i);
            }
        }
        List<int> Consumers(string tensor) => consumers.TryGetValue(tensor, out var list) ? list : new List<int>();
        // The tensor the graph's Identity "output" reads: it leaves the graph in float32.
        var result = _nodes.Single(n => n.Output == resultName && n.Op == "Identity").Inputs[0];

        // ReLU steps that can merge into their producer's quantisation: the ReLU alone reads its input step tensor.
        var merged = new Dictionary<string, string>(StringComparer.Ordinal);
        var mergedReluNodes = new HashSet<int>();
        for (var i = 0; i < _nodes.Count; i++)
        {
            var node = _nodes[i];
            if (node.Op != "Relu") continue;
            var (t, r) = (node.Inputs[0], node.Output);
            if (t == "input" || t == result || r == result || !_steps.Contains(t) || !_steps.Contains(r) || Consumers(t).Count != 1) continue;
            merged[t] = r;
            mergedReluNodes.Add(i);
        }

        // The nodes that compute on integers (a merged ReLU counts as its producer's output here).
        var integer = new HashSet<int>();
        for (var i = 0; i < _nodes.Count; i++)
        {
            var node = _nodes[i];
            if (!IntegerOps.Contains(node.Op)) continue;
            var activations = node.Inputs.Where(x => !initializers.Contains(x)).ToList();
            var output = merged.TryGetValue(node.Output, out var relu) ? relu : node.Output;
            if (activations.Count == 0 || !activations.All(_steps.Contains) || !_steps.Contains(output) || output == result
                || activations.Contains(result) || activations.Any(merged.ContainsKey)) continue;
            var fits = node.Op switch
            {
                "Conv" => activations.Count == 1 && node.Inputs[0] == activations[0] && floatWeights.Contains(node.Inputs[1])
                          && (node.Inputs.Length < 3 || floatWeights.Contains(node.Inputs[2])),
                "Add" => activations.Count == 2 && node.Inputs.Length == 2,
                _ => activations.Count == 1 && node.Inputs.Length == 1,
            };
            if (fits) integer.Add(i);
        }

        // The quantised tensors, by their semantic names (a merged ReLU's output stands for its input), in graph order.
        var tensors = new List<string>();
        var nonNegative = new HashSet<string>(StringComparer.Ordinal);
        var shares = new Dictionary<string, string>(StringComparer.Ordinal);
        bool Quantised(string semantic, int producer) =>
            (producer >= 0 && integer.Contains(producer)) || Consumers(semantic).Any(integer.Contains);
        // A ReLU merges only where its output is quantised (else nothing would clamp): a pre-activation network's last
        // ReLU, between a float batch-norm and the float head, stays a ReLU.
        foreach (var (t, r) in merged.ToList())
        {
            if (Quantised(r, producers[t])) continue;
            merged.Remove(t);
            mergedReluNodes.Remove(producers[r]);
        }
        if (_steps.Contains("input") && Quantised("input", -1)) tensors.Add("input");
        for (var i = 0; i < _nodes.Count; i++)
        {
            if (mergedReluNodes.Contains(i)) continue;
            var output = _nodes[i].Output;
            var isMerged = merged.TryGetValue(output, out var relu);
            var semantic = isMerged ? relu! : output;
            if (!_steps.Contains(semantic) || semantic == result) continue;
            if (!Quantised(semantic, i)) continue;
            tensors.Add(semantic);
            if (isMerged) nonNegative.Add(semantic);
            if (integer.Contains(i) && _nodes[i].Op == "MaxPool") shares[semantic] = _nodes[i].Inputs[0];
        }
        var floatOps = _nodes.Where((n, i) => !integer.Contains(i) && !mergedReluNodes.Contains(i) && n.Op != "Identity")
            .Select(n => n.Op).Distinct(StringComparer.Ordinal).OrderBy(o => o, StringComparer.Ordinal).ToList();
        return new Int8Layout(tensors, merged, integer, shares, nonNegative, floatOps);
    }

    /// <summary>The float32 graph with <paramref name="tensors"/> as extra outputs, for a calibration run to read them.</summary>
    internal byte[] BuildCalibration(IEnumerable<string> tensors) =>
        Model(null, false, _nodes, _initializers, tensors.Where(t => t != "input").ToList()).ToByteArray();

    /// <summary>
    /// The int8 model: each quantised tensor followed by QuantizeLinear and DequantizeLinear with its uint8 scale and zero
    /// point (from <paramref name="ranges"/>, by tensor), each integer convolution's weight int8 per output channel
    /// (symmetric; with <paramref name="reduceRange"/> within ±63, for CPUs without VNNI, whose u8×s8 multiply-add
    /// saturates) and its bias int32 at the input's scale times the weight's, merged ReLUs left out.
    /// </summary>
    internal (OnnxModel Model, IReadOnlyList<Int8TensorRange> Ranges) BuildInt8(Int8Layout layout,
        IReadOnlyDictionary<string, (float Min, float Max, float Low, float High)> ranges, bool reduceRange, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var quantised = new HashSet<string>(layout.Tensors, StringComparer.Ordinal);
        var parameters = new Dictionary<string, (string Scale, string ZeroPoint, float ScaleValue, byte ZeroValue)>(StringComparer.Ordinal);
        var initializers = _initializers.ToDictionary(i => i.Name, StringComparer.Ordinal);
        var added = new List<Initializer>();
        var removed = new HashSet<string>(StringComparer.Ordinal);
        var report = new List<Int8TensorRange>();

        foreach (var tensor in layout.Tensors)
        {
            var (min, max, low, high) = ranges[tensor];
            if (layout.SharesInput.TryGetValue(tensor, out var source))
            {
                parameters[tensor] = parameters[source];
                var p = parameters[source];
                report.Add(new Int8TensorRange(tensor, min, max, Low(p), High(p), p.ScaleValue, p.ZeroValue));
                continue;
            }
            if (layout.NonNegative.Contains(tensor)) low = 0;
            low = Math.Min(low, 0f);
            high = Math.Max(high, 0f);
            var scale = high - low > 1e-20f ? (high - low) / 255f : 1f;
            var zero = (byte)Math.Clamp(MathF.Round(-low / scale, MidpointRounding.ToEven), 0f, 255f);
            var scaleName = tensor + "_scale";
            var zeroName = tensor + "_zero_point";
            added.Add(new Initializer(scaleName, Array.Empty<long>(), Float32Type, BitConverter.GetBytes(scale)));
            added.Add(new Initializer(zeroName, Array.Empty<long>(), Uint8Type, new[] { zero }));
            parameters[tensor] = (scaleName, zeroName, scale, zero);
            report.Add(new Int8TensorRange(tensor, min, max, low, high, scale, zero));
        }

        var nodes = new List<OnnxNode>();
        void QuantisePair(string source, string semantic)
        {
            var p = parameters[semantic];
            nodes.Add(new OnnxNode("QuantizeLinear", semantic + ".quantize", new[] { source, p.Scale, p.ZeroPoint }, semantic + "_quantized", Array.Empty<Attribute>()));
            nodes.Add(new OnnxNode("DequantizeLinear", semantic + ".dequantize", new[] { semantic + "_quantized", p.Scale, p.ZeroPoint }, semantic + "_dequantized", Array.Empty<Attribute>()));
        }
        string Read(string tensor) => quantised.Contains(tensor) ? tensor + "_dequantized" : tensor;

        if (quantised.Contains("input")) QuantisePair("input", "input");
        for (var i = 0; i < _nodes.Count; i++)
        {
            var node = _nodes[i];
            if (node.Op == "Relu" && layout.MergedRelus.TryGetValue(node.Inputs[0], out var r) && r == node.Output) continue;
            var inputs = node.Inputs.Select(Read).ToArray();
            if (layout.IntegerNodes.Contains(i) && node.Op == "Conv")
            {
                var inputScale = parameters[node.Inputs[0]].ScaleValue;
                var (weightName, weightScales) = QuantiseWeight(initializers[node.Inputs[1]], reduceRange, added, nodes);
                removed.Add(node.Inputs[1]);
                inputs[1] = weightName;
                if (node.Inputs.Length > 2)
                {
                    inputs[2] = QuantiseBias(initializers[node.Inputs[2]], inputScale, weightScales, added, nodes);
                    removed.Add(node.Inputs[2]);
                }
            }
            nodes.Add(node with { Inputs = inputs });
            var semantic = layout.MergedRelus.TryGetValue(node.Output, out var relu) ? relu : node.Output;
            if (quantised.Contains(semantic)) QuantisePair(node.Output, semantic);
        }

        var all = _initializers.Where(i => !removed.Contains(i.Name)).Concat(added).ToList();
        var bytes = Model(metadata, false, nodes, all).ToByteArray();
        var (input, output, _) = Io(false);
        var model = new OnnxModel(bytes, output, _inChannels, _dynamicSpatial ? null : _fixedSize, _output!.Value.Features, _opset, nodes.Count, all.Count, input);
        return (model, report);

        static float Low((string, string, float ScaleValue, byte ZeroValue) p) => -p.ZeroValue * p.ScaleValue;
        static float High((string, string, float ScaleValue, byte ZeroValue) p) => (255 - p.ZeroValue) * p.ScaleValue;
    }

    // A convolution's float weight as int8 per output channel (symmetric, zero points 0) behind a DequantizeLinear on axis 0.
    private static (string Name, float[] Scales) QuantiseWeight(Initializer weight, bool reduceRange, List<Initializer> added, List<OnnxNode> nodes)
    {
        var values = MemoryMarshal.Cast<byte, float>(weight.Raw);
        var channels = (int)weight.Dims[0];
        var per = values.Length / channels;
        var limit = reduceRange ? 63f : 127f;
        var scales = new float[channels];
        var quantised = new byte[values.Length];
        for (var c = 0; c < channels; c++)
        {
            var slice = values.Slice(c * per, per);
            var largest = 0f;
            foreach (var v in slice) largest = Math.Max(largest, Math.Abs(v));
            var scale = largest > 0 ? largest / limit : 1f;
            scales[c] = scale;
            for (var k = 0; k < per; k++)
                quantised[c * per + k] = unchecked((byte)(sbyte)Math.Clamp(MathF.Round(slice[k] / scale, MidpointRounding.ToEven), -limit, limit));
        }
        var name = weight.Name;
        added.Add(new Initializer(name + "_quantized", weight.Dims, Int8Type, quantised));
        added.Add(new Initializer(name + "_scale", new long[] { channels }, Float32Type, MemoryMarshal.AsBytes(scales.AsSpan()).ToArray()));
        added.Add(new Initializer(name + "_zero_point", new long[] { channels }, Int8Type, new byte[channels]));
        nodes.Add(new OnnxNode("DequantizeLinear", name + ".dequantize", new[] { name + "_quantized", name + "_scale", name + "_zero_point" }, name + "_dequantized",
            new[] { Int("axis", 0) }));
        return (name + "_dequantized", scales);
    }

    // A convolution's float bias as int32 at the input's scale times each channel's weight scale, behind a DequantizeLinear.
    private static string QuantiseBias(Initializer bias, float inputScale, float[] weightScales, List<Initializer> added, List<OnnxNode> nodes)
    {
        var values = MemoryMarshal.Cast<byte, float>(bias.Raw);
        var scales = new float[values.Length];
        var quantised = new int[values.Length];
        for (var c = 0; c < values.Length; c++)
        {
            scales[c] = inputScale * weightScales[c];
            quantised[c] = (int)Math.Clamp(Math.Round((double)values[c] / scales[c], MidpointRounding.ToEven), int.MinValue, int.MaxValue);
        }
        var name = bias.Name;
        added.Add(new Initializer(name + "_quantized", bias.Dims, Int32Type, MemoryMarshal.AsBytes(quantised.AsSpan()).ToArray()));
        added.Add(new Initializer(name + "_scale", new long[] { values.Length }, Float32Type, MemoryMarshal.AsBytes(scales.AsSpan()).ToArray()));
        nodes.Add(new OnnxNode("DequantizeLinear", name + ".dequantize", new[] { name + "_quantized", name + "_scale" }, name + "_dequantized", new[] { Int("axis", 0) }));
        return name + "_dequantized";
    }
}
