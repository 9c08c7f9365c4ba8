using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Google.Protobuf;
using TorchSharp;
using TorchSharp.Modules;

namespace ResNetGen;

/// <summary>What an ONNX export wrote.</summary>
/// <param name="Path">The file.</param>
/// <param name="Opset">The default-domain opset it declares.</param>
/// <param name="Nodes">Graph nodes.</param>
/// <param name="Initializers">Weight tensors stored in the file.</param>
/// <param name="Warnings">Things the caller should know (e.g. a network exported from training mode).</param>
public sealed record OnnxExport(string Path, int Opset, int Nodes, int Initializers, IReadOnlyList<string> Warnings);

/// <summary>An ONNX model built in memory, and the shapes it takes and gives.</summary>
/// <param name="Bytes">The serialised ModelProto.</param>
/// <param name="OutputName">The graph output's name (<c>logits</c>, or <c>features</c> for a headless network).</param>
/// <param name="InChannels">The input's channels; the input is <c>input</c>, [N, InChannels, H, W].</param>
/// <param name="FixedSize">The one height and width the graph accepts, or null where any size goes.</param>
/// <param name="OutputFeatures">The output's features: [N, OutputFeatures].</param>
/// <param name="Opset">The default-domain opset it declares.</param>
/// <param name="Nodes">Graph nodes.</param>
/// <param name="Initializers">Weight tensors.</param>
/// <param name="InputName">The graph's input.</param>
/// <param name="Float16">Whether the input and output are float16 (the graph computes in float32 between them).</param>
public sealed record OnnxModel(byte[] Bytes, string OutputName, long InChannels, int? FixedSize, long OutputFeatures, int Opset, int Nodes, int Initializers,
    string InputName = "input", bool Float16 = false);

/// <summary>
/// Builds an ONNX model (the protobuf messages of the ONNX specification, written with Google.Protobuf's
/// <see cref="CodedOutputStream"/>) for generated networks' <c>ExportOnnx</c>: one call per layer, in forward order,
/// with tensor names that follow the state_dict (initializers <c>layer1.0.conv1.weight</c>, nodes <c>layer1.0.conv1</c>).
/// </summary>
public sealed partial class OnnxGraphBuilder
{
    /// <summary>The highest opset this builder has been checked against.</summary>
    public const int MaxOpset = 21;

    private readonly string _graph;
    private readonly int _opset;
    private readonly long _inChannels;
    private readonly bool _dynamicSpatial;
    private readonly int _fixedSize;
    private readonly List<OnnxNode> _nodes = new();
    private readonly List<Initializer> _initializers = new();
    // The tensors between the network's steps (the input and each step's result), as NetworkGraph marks them: where an
    // int8 graph quantises. A step's inner tensors (a group-norm's, a squeeze-excite's) are not among them.
    private readonly HashSet<string> _steps = new(StringComparer.Ordinal) { "input" };
    private readonly List<string> _warnings = new();
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    /// <param name="graph">The network's name.</param>
    /// <param name="opset">The opset asked for.</param>
    /// <param name="minimumOpset">The lowest opset whose operators this network's graph can be written with.</param>
    /// <param name="inChannels">Input channels.</param>
    /// <param name="dynamicSpatial">Whether height and width may vary; otherwise they are fixed at <paramref name="fixedSize"/>.</param>
    /// <param name="fixedSize">The declared input size.</param>
    /// <param name="training">Whether the network is in training mode (exported with eval semantics, with a warning).</param>
    public OnnxGraphBuilder(string graph, int opset, int minimumOpset, long inChannels, bool dynamicSpatial, int fixedSize, bool training)
    {
        if (opset < minimumOpset)
            throw new ArgumentOutOfRangeException(nameof(opset), opset,
                $"{graph} needs ONNX opset {minimumOpset} or later (its graph uses {(minimumOpset >= 11 ? "Pad and Slice with tensor inputs, for its parameter-free shortcuts or blur pools" : "BatchNormalization-9 and Gemm")}); pass opset: {Math.Max(minimumOpset, 17)}.");
        if (opset > MaxOpset)
            throw new ArgumentOutOfRangeException(nameof(opset), opset, $"opset {opset} is newer than ResNetGen has been checked against ({MaxOpset}); pass opset: 17 (the default) or up to {MaxOpset}.");
        _graph = graph;
        _opset = opset;
        _inChannels = inChannels;
        _dynamicSpatial = dynamicSpatial;
        _fixedSize = fixedSize;
        if (training)
            _warnings.Add($"{graph} was in training mode; it is exported with eval semantics (batch-norm uses its running statistics). Call eval() before exporting to silence this.");
    }

    /// <summary>A convolution with <paramref name="weight"/> (and <paramref name="bias"/>, if given) from <paramref name="input"/> to <paramref name="output"/>.</summary>
    public void Conv(string name, string input, string output, torch.Tensor weight, torch.Tensor? bias, long kernel, long stride, long padding, long dilation, long groups)
    {
        var inputs = new List<string> { input, Weight(name + ".weight", weight) };
        if (bias is not null) inputs.Add(Weight(name + ".bias", bias));
        Node("Conv", name, inputs, output,
            Ints("dilations", dilation, dilation), Int("group", groups), Ints("kernel_shape", kernel, kernel),
            Ints("pads", padding, padding, padding, padding), Ints("strides", stride, stride));
    }

    /// <summary>Eval-mode batch-norm with the module's running statistics.</summary>
    public void BatchNorm(string name, string input, string output, BatchNorm2d norm) =>
        Node("BatchNormalization", name,
            new[] { input, Weight(name + ".weight", norm.weight!), Weight(name + ".bias", norm.bias!), Weight(name + ".running_mean", norm.running_mean!), Weight(name + ".running_var", norm.running_var!) },
            output, Float("epsilon", (float)norm.eps), Float("momentum", (float)(1 - (norm.momentum ?? 0.1))));

    /// <summary>
    /// Group-norm, as PyTorch computes it, in two passes: the input reshaped to [N, groups, −1], its mean taken off, the
    /// biased variance of what is left (plus the module's ε) divided out, reshaped back to the input's shape, then the
    /// per-channel weight and bias as Mul and Add. Not InstanceNormalization (ONNX Runtime's loses ~3% of the output to
    /// cancellation where a group's mean is large against its spread, as in a pre-activation network's residual stream),
    /// nor GroupNormalization-18 (a scale per group, which cannot hold the per-channel weight).
    /// </summary>
    public void GroupNorm(string name, string input, string output, GroupNorm norm)
    {
        var groups = norm.num_groups;
        var channels = norm.weight!.shape[0];
        var grouped = output + "_grouped";
        Node("Reshape", name + ".group", new[] { input, Constant(name + ".group_shape", 0, groups, -1) }, grouped);
        ReduceMeanLast(name + ".mean", grouped, output + "_mean");
        Node("Sub", name + ".centre", new[] { grouped, output + "_mean" }, output + "_centred");
        Node("Mul", name + ".square", new[] { output + "_centred", output + "_centred" }, output + "_squared");
        ReduceMeanLast(name + ".variance", output + "_squared", output + "_variance");
        using var eps = torch.tensor(new[] { (float)norm.eps });
        Node("Add", name + ".eps", new[] { output + "_variance", Weight(name + ".epsilon", eps) }, output + "_shifted");
        Node("Sqrt", name + ".std", new[] { output + "_shifted" }, output + "_std");
        Node("Div", name + ".normalise", new[] { output + "_centred", output + "_std" }, output + "_normalised");
        Node("Shape", name + ".shape", new[] { input }, output + "_shape");
        Node("Reshape", name + ".ungroup", new[] { output + "_normalised", output + "_shape" }, output + "_ungrouped");
        using var weight = norm.weight!.reshape(channels, 1, 1);
        using var bias = norm.bias!.reshape(channels, 1, 1);
        Node("Mul", name + ".scale", new[] { output + "_ungrouped", Weight(name + ".weight", weight) }, output + "_scaled");
        Node("Add", name, new[] { output + "_scaled", Weight(name + ".bias", bias) }, output);
    }

    /// <summary>ReduceMean over the last of three axes, keeping it: axes an attribute before opset 18, an input from 18.</summary>
    private void ReduceMeanLast(string name, string input, string output)
    {
        if (_opset < 18) Node("ReduceMean", name, new[] { input }, output, Ints("axes", 2), Int("keepdims", 1));
        else Node("ReduceMean", name, new[] { input, Constant(name + ".axes", 2) }, output, Int("keepdims", 1));
    }

    /// <summary>
    /// BiT's fixed stem pool, zero padding then a 3×3 stride-2 max-pool, written without a Pad node: ONNX Runtime's
    /// Pad_Fusion moves a zero Pad into the MaxPool's pads, which pad with −∞, and so changes the result wherever a
    /// border window holds only negative values. Here: the −∞-padded MaxPool (pads 1), and where a window overlaps the
    /// border (an AveragePool of ones counting the padding falls below 1 exactly there), the max of that and 0.
    /// </summary>
    public void ZeroPaddedMaxPool(string name, string input, string output)
    {
        Node("MaxPool", name, new[] { input }, output + "_pooled", Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1), Ints("strides", 2, 2));
        Node("Shape", name + ".shape", new[] { input }, output + "_shape");
        using var one = torch.tensor(new[] { 1f });
        Node("ConstantOfShape", name + ".ones", new[] { output + "_shape" }, output + "_ones", Tensor("value", one));
        Node("AveragePool", name + ".coverage", new[] { output + "_ones" }, output + "_coverage",
            Int("count_include_pad", 1), Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1), Ints("strides", 2, 2));
        using var zero = torch.tensor(new[] { 0f });
        Node("Less", name + ".border", new[] { output + "_coverage", Weight(name + ".one", one) }, output + "_border");
        Node("Max", name + ".zero", new[] { output + "_pooled", Weight(name + ".zero", zero) }, output + "_with_zero");
        Node("Where", name + ".select", new[] { output + "_border", output + "_with_zero", output + "_pooled" }, output);
    }

    /// <summary>ReLU.</summary>
    public void Relu(string name, string input, string output) => Node("Relu", name, new[] { input }, output);

    /// <summary>The residual add.</summary>
    public void Add(string name, string a, string b, string output) => Node("Add", name, new[] { a, b }, output);

    /// <summary>The ImageNet stem's 3×3 max-pool with padding 1 (stride 2; 1 before a blur pool).</summary>
    public void MaxPool(string name, string input, string output, long stride = 2) =>
        Node("MaxPool", name, new[] { input }, output, Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1), Ints("strides", stride, stride));

    /// <summary>Anti-aliasing's average pool: a <paramref name="stride"/>-sized window at that stride, no padding (floors).</summary>
    public void AntiAliasPool(string name, string input, string output, long stride) =>
        Node("AveragePool", name, new[] { input }, output, Ints("kernel_shape", stride, stride), Ints("strides", stride, stride));

    /// <summary>Anti-aliasing's blur pool: reflect padding of one, then the binomial filter per channel at <paramref name="stride"/>.</summary>
    public void Blur(string name, string input, string output, long stride, long channels)
    {
        var padded = output + "_padded";
        Node("Pad", name + ".pad", new[] { input, Constant(name + ".pads", 0, 0, 1, 1, 0, 0, 1, 1) }, padded, Str("mode", "reflect"));
        using var filter = Steps.BlurFilter(channels, torch.float32, torch.CPU);
        Node("Conv", name, new[] { padded, Weight(name + ".filter", filter) }, output,
            Ints("dilations", 1, 1), Int("group", channels), Ints("kernel_shape", 3, 3), Ints("pads", 0, 0, 0, 0), Ints("strides", stride, stride));
    }

    /// <summary>Option A: <c>x[:, :, ::stride, ::stride]</c> then zero channels appended.</summary>
    public void ZeroPadShortcut(string name, string input, string output, long stride, long padChannels)
    {
        var source = input;
        if (stride != 1)
        {
            source = output + "_sampled";
            Node("Slice", name + ".subsample",
                new[] { input, Constant(name + ".starts", 0, 0), Constant(name + ".ends", long.MaxValue, long.MaxValue), Constant(name + ".axes", 2, 3), Constant(name + ".steps", stride, stride) },
                source);
        }
        PadChannels(name, source, output, padChannels);
    }

    /// <summary>Option A with average pooling: zero channels appended, then 2×2 average pooling where the stride is 2.</summary>
    public void AvgPoolZeroPadShortcut(string name, string input, string output, long stride, long padChannels)
    {
        if (stride == 1)
        {
            PadChannels(name, input, output, padChannels);
            return;
        }
        var padded = output + "_padded";
        PadChannels(name, input, padded, padChannels);
        Node("AveragePool", name + ".pool", new[] { padded }, output, Ints("kernel_shape", stride, stride), Ints("strides", stride, stride));
    }

    private void PadChannels(string name, string input, string output, long padChannels) =>
        Node("Pad", name + ".pad", new[] { input, Constant(name + ".pads", 0, 0, 0, 0, 0, padChannels, 0, 0) }, output, Str("mode", "constant"));

    /// <summary>Global average pooling to [N, C].</summary>
    public void GlobalAveragePool(string name, string input, string output)
    {
        Node("GlobalAveragePool", name, new[] { input }, output + "_4d");
        Node("Flatten", name + ".flatten", new[] { output + "_4d" }, output, Int("axis", 1));
    }

    /// <summary>
    /// The avg-down shortcut's pool: AveragePool 2×2 at stride 2 with ceil_mode and padding not counted; at stride 1, one
    /// zero row and column padded on (counted, as timm's AvgPool2dSame counts them), then a 2×2 average at stride 1.
    /// </summary>
    public void AvgDownPool(string name, string input, string output, long stride)
    {
        if (stride == 2)
        {
            Node("AveragePool", name, new[] { input }, output, Int("ceil_mode", 1), Int("count_include_pad", 0),
                Ints("kernel_shape", 2, 2), Ints("strides", 2, 2));
            return;
        }
        var padded = output + "_padded";
        Node("Pad", name + ".pad", new[] { input, Constant(name + ".pads", 0, 0, 0, 0, 0, 0, 1, 1) }, padded, Str("mode", "constant"));
        Node("AveragePool", name, new[] { padded }, output, Ints("kernel_shape", 2, 2), Ints("strides", 1, 1));
    }

    /// <summary>Squeeze-excite: global average, 1×1 convolution with bias, ReLU, 1×1 convolution with bias, sigmoid, product.</summary>
    public void SqueezeExcite(string name, string input, string output, string reduceName, torch.Tensor reduceWeight, torch.Tensor reduceBias,
        string expandName, torch.Tensor expandWeight, torch.Tensor expandBias)
    {
        Node("GlobalAveragePool", name + ".pool", new[] { input }, output + "_pooled");
        Conv(reduceName, output + "_pooled", output + "_reduced", reduceWeight, reduceBias, 1, 1, 0, 1, 1);
        Node("Relu", name + ".relu", new[] { output + "_reduced" }, output + "_activated");
        Conv(expandName, output + "_activated", output + "_expanded", expandWeight, expandBias, 1, 1, 0, 1, 1);
        Node("Sigmoid", name + ".gate", new[] { output + "_expanded" }, output + "_gate");
        Node("Mul", name + ".scale", new[] { input, output + "_gate" }, output);
    }

    /// <summary>Efficient channel attention: global average as a row [N, 1, C], a 1-D convolution, sigmoid, product.</summary>
    public void EfficientChannel(string name, string input, string output, torch.Tensor weight, long padding)
    {
        var kernel = weight.shape[2];
        Node("GlobalAveragePool", name + ".pool", new[] { input }, output + "_pooled");
        Node("Reshape", name + ".row", new[] { output + "_pooled", Constant(name + ".row_shape", 0, 1, -1) }, output + "_row");
        Node("Conv", name, new[] { output + "_row", Weight(name + ".weight", weight) }, output + "_mixed",
            Ints("dilations", 1), Int("group", 1), Ints("kernel_shape", kernel), Ints("pads", padding, padding), Ints("strides", 1));
        Node("Sigmoid", name + ".gate", new[] { output + "_mixed" }, output + "_gate_row");
        Node("Reshape", name + ".column", new[] { output + "_gate_row", Constant(name + ".column_shape", 0, -1, 1, 1) }, output + "_gate");
        Node("Mul", name + ".scale", new[] { input, output + "_gate" }, output);
    }

    /// <summary>A classifier stored as a 1×1 convolution [classes, C, 1, 1] with bias, on pooled [N, C]: Gemm with the weight as [classes, C].</summary>
    public void ConvHead(string name, string input, string output, torch.Tensor weight, torch.Tensor bias)
    {
        using var matrix = weight.reshape(weight.shape[0], weight.shape[1]);
        Node("Gemm", name, new[] { input, Weight(name + ".weight", matrix), Weight(name + ".bias", bias) }, output, Int("transB", 1));
    }

    /// <summary>The classifier, as Gemm with the weight transposed.</summary>
    public void Linear(string name, string input, string output, Linear linear) =>
        Node("Gemm", name, new[] { input, Weight(name + ".weight", linear.weight!), Weight(name + ".bias", linear.bias!) }, output, Int("transB", 1));

    /// <summary>
    /// Ends the graph: <paramref name="result"/>, the graph's last tensor, becomes its output <paramref name="outputName"/>
    /// [N, <paramref name="outputFeatures"/>]. Then <see cref="Save"/> writes the model, or <see cref="Build"/> gives it in memory.
    /// </summary>
    public OnnxGraphBuilder Output(string result, string outputName, long outputFeatures)
    {
        if (_output is not null) throw new InvalidOperationException($"the graph of {_graph} already has its output");
        Node("Identity", "output", new[] { result }, outputName);
        _output = (outputName, outputFeatures);
        return this;
    }

    private (string Name, long Features)? _output;

    /// <summary>Writes the model (to a file beside <paramref name="path"/>, then renamed into place) and reports on it.</summary>
    /// <param name="path">The .onnx file.</param>
    /// <param name="metadata">The model's metadata_props, written in key order (ONNX Runtime's CustomMetadataMap).</param>
    public OnnxExport Save(string path, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var model = Model(metadata, false, _nodes, _initializers);
        var full = AtomicFile.Write(path, model.WriteTo); // its errors name the file and the reason
        return new OnnxExport(full, _opset, _nodes.Count, _initializers.Count, _warnings);
    }

    /// <summary>
    /// The model as bytes in memory, for an in-process session (<see cref="OnnxRuntimeEngine"/>): the same model
    /// <see cref="Save"/> writes, with what a caller needs to feed it. With <paramref name="float16"/>, for a float16
    /// network: its input and output are float16 (<c>input_float16</c>, and the output's name with <c>_float16</c>),
    /// cast to float32 and back around the same graph, whose weights are float32 (the network's, widened exactly).
    /// </summary>
    public OnnxModel Build(bool float16 = false, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var bytes = Model(metadata, float16, _nodes, _initializers).ToByteArray();
        var (input, output, _) = Io(float16);
        return new(bytes, output, _inChannels, _dynamicSpatial ? null : _fixedSize, _output!.Value.Features, _opset,
            _nodes.Count + (float16 ? 2 : 0), _initializers.Count, input, float16);
    }

    // TensorProto.DataType: FLOAT = 1, FLOAT16 = 10.
    private const long Float32Type = 1, Float16Type = 10;

    // The graph's input and output names and their element type: float16 ones are cast to and from the float32 graph.
    private (string Input, string Output, long Type) Io(bool float16)
    {
        var (name, _) = _output ?? throw new InvalidOperationException($"the graph of {_graph} has no output yet: call Output first");
        return float16 ? ("input_float16", name + "_float16", Float16Type) : ("input", name, Float32Type);
    }

    // The ModelProto of these nodes and initializers (the builder's own, or an int8 rewrite of them); with extraOutputs,
    // those float32 tensors become graph outputs too (a calibration run reads them).
    private ByteString Model(IReadOnlyDictionary<string, string>? metadata, bool float16, IReadOnlyList<OnnxNode> nodes,
        IReadOnlyList<Initializer> initializers, IReadOnlyList<string>? extraOutputs = null)
    {
        var (input, output, type) = Io(float16);
        var (outputName, outputFeatures) = _output!.Value;
        var graph = Message(g =>
        {
            if (float16) g.Bytes(1, NodeMessage(new OnnxNode("Cast", "input.to_float32", new[] { input }, "input", new[] { Int("to", Float32Type) })));
            foreach (var node in nodes) g.Bytes(1, NodeMessage(node));
            if (float16) g.Bytes(1, NodeMessage(new OnnxNode("Cast", "output.to_float16", new[] { outputName }, output, new[] { Int("to", Float16Type) })));
            g.String(2, _graph);
            foreach (var init in initializers) g.Bytes(5, TensorMessage(init));
            g.Bytes(11, ValueInfo(input, "N", _inChannels, _dynamicSpatial ? "H" : null, _dynamicSpatial ? "W" : null, type));
            g.Bytes(12, ValueInfo(output, "N", outputFeatures, null, null, type, rank2: true));
            foreach (var extra in extraOutputs ?? Array.Empty<string>())
                g.Bytes(12, Message(v => { v.String(1, extra); v.Bytes(2, Message(t => t.Bytes(1, Message(tensor => tensor.Int64(1, Float32Type))))); }));
        });
        return Message(m =>
        {
            m.Int64(1, IrVersion(_opset));
            m.String(2, "ResNetGen");
            m.String(3, typeof(OnnxGraphBuilder).Assembly.GetName().Version?.ToString(3) ?? "0");
            m.Bytes(7, graph);
            m.Bytes(8, Message(o => { o.String(1, ""); o.Int64(2, _opset); }));
            foreach (var (key, value) in (metadata ?? new Dictionary<string, string>()).OrderBy(p => p.Key, StringComparer.Ordinal))
                m.Bytes(14, Message(p => { p.String(1, key); p.String(2, value); }));
        });
    }

    private static long IrVersion(int opset) => opset switch
    {
        <= 9 => 4,
        10 => 5,
        11 => 6,
        <= 14 => 7,
        <= 18 => 8,
        <= 20 => 9,
        _ => 10,
    };

    // ---- protobuf messages, field numbers from onnx.proto ----

    private sealed class Writer
    {
        public readonly MemoryStream Stream = new();
        public readonly CodedOutputStream Coded;
        public Writer() => Coded = new CodedOutputStream(Stream);
        public void Tag(int field, WireFormat.WireType type) => Coded.WriteTag(field, type);
        public void Int64(int field, long value) { Tag(field, WireFormat.WireType.Varint); Coded.WriteInt64(value); }
        public void Float(int field, float value) { Tag(field, WireFormat.WireType.Fixed32); Coded.WriteFloat(value); }
        public void String(int field, string value) { Tag(field, WireFormat.WireType.LengthDelimited); Coded.WriteString(value); }
        public void Bytes(int field, ByteString value) { Tag(field, WireFormat.WireType.LengthDelimited); Coded.WriteBytes(value); }
    }

    private static ByteString Message(Action<Writer> write)
    {
        var w = new Writer();
        write(w);
        w.Coded.Flush();
        return ByteString.CopyFrom(w.Stream.GetBuffer(), 0, (int)w.Stream.Length);
    }

    private delegate void Attribute(Writer w);

    // AttributeProto: name = 1, f = 2, i = 3, s = 4, ints = 8, type = 20 (FLOAT = 1, INT = 2, STRING = 3, INTS = 7).
    private static Attribute Int(string name, long value) => w => w.Bytes(5, Message(a => { a.String(1, name); a.Int64(3, value); a.Int64(20, 2); }));

    private static Attribute Float(string name, float value) => w => w.Bytes(5, Message(a => { a.String(1, name); a.Float(2, value); a.Int64(20, 1); }));

    // AttributeProto.t = 5 (a TensorProto), type TENSOR = 4.
    // The value is read now: the node is written later, when the caller's tensor may be gone.
    private static Attribute Tensor(string name, torch.Tensor value)
    {
        var tensor = TensorMessage(FloatTensor(null, value));
        return w => w.Bytes(5, Message(a =>
        {
            a.String(1, name);
            a.Bytes(5, tensor);
            a.Int64(20, 4);
        }));
    }

    private static Attribute Str(string name, string value) => w => w.Bytes(5, Message(a => { a.String(1, name); a.Bytes(4, ByteString.CopyFromUtf8(value)); a.Int64(20, 3); }));

    private static Attribute Ints(string name, params long[] values) => w => w.Bytes(5, Message(a =>
    {
        a.String(1, name);
        foreach (var v in values) a.Int64(8, v);
        a.Int64(20, 7);
    }));

    // NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5.
    private void Node(string opType, string name, IEnumerable<string> inputs, string output, params Attribute[] attributes)
    {
        if (!_names.Add("node:" + name)) throw new InvalidOperationException($"two ONNX nodes are named {name}");
        _nodes.Add(new OnnxNode(opType, name, inputs.ToArray(), output, attributes));
    }

    /// <summary>A node as data: what <see cref="Model"/> writes, and what an int8 rewrite reads and rearranges.</summary>
    private sealed record OnnxNode(string Op, string Name, string[] Inputs, string Output, Attribute[] Attributes);

    /// <summary>An initializer as data: its dimensions, TensorProto data type and little-endian raw bytes.</summary>
    private sealed record Initializer(string Name, long[] Dims, long DataType, byte[] Raw);

    private static ByteString NodeMessage(OnnxNode node) =>
        Message(n =>
        {
            foreach (var input in node.Inputs) n.String(1, input);
            n.String(2, node.Output);
            n.String(3, node.Name);
            n.String(4, node.Op);
            foreach (var attribute in node.Attributes) attribute(n);
        });

    // TensorProto: dims = 1, data_type = 2 (FLOAT = 1, UINT8 = 2, INT8 = 3, INT32 = 6, INT64 = 7), name = 8, raw_data = 9 (little-endian).
    private static ByteString TensorMessage(Initializer tensor) =>
        Message(t =>
        {
            foreach (var d in tensor.Dims) t.Int64(1, d);
            t.Int64(2, tensor.DataType);
            if (tensor.Name.Length > 0) t.String(8, tensor.Name);
            t.Bytes(9, ByteString.CopyFrom(tensor.Raw));
        });

    private string Weight(string name, torch.Tensor tensor)
    {
        if (!_names.Add("tensor:" + name)) throw new InvalidOperationException($"two ONNX initializers are named {name}");
        _initializers.Add(FloatTensor(name, tensor));
        return name;
    }

    /// <summary>A float32 tensor of <paramref name="tensor"/>'s values, named (an initializer) or not (an attribute's value: name "").</summary>
    private static Initializer FloatTensor(string? name, torch.Tensor tensor)
    {
        using var cpu = TensorBytes.DenseCpu(tensor, torch.float32);
        var bytes = cpu.numel() == 0 ? Array.Empty<byte>() : cpu.bytes.ToArray();
        return new Initializer(name ?? "", cpu.shape.ToArray(), Float32Type, bytes);
    }

    private string Constant(string name, params long[] values)
    {
        if (!_names.Add("tensor:" + name)) throw new InvalidOperationException($"two ONNX initializers are named {name}");
        var bytes = new byte[values.Length * 8];
        for (var i = 0; i < values.Length; i++) BitConverter.TryWriteBytes(bytes.AsSpan(i * 8), values[i]);
        _initializers.Add(new Initializer(name, new long[] { values.Length }, 7, bytes));
        return name;
    }

    /// <summary>The input's channels.</summary>
    internal long InChannels => _inChannels;

    /// <summary>The one height and width the graph accepts, or null where any size goes.</summary>
    internal int? FixedSize => _dynamicSpatial ? null : _fixedSize;

    /// <summary>Marks <paramref name="tensor"/> as a step's result (NetworkGraph does, for each step): where an int8 graph may quantise.</summary>
    internal void MarkStep(string tensor) => _steps.Add(tensor);

    // ValueInfoProto: name = 1, type = 2; TypeProto.tensor_type = 1 { elem_type = 1, shape = 2 };
    // TensorShapeProto.dim = 1 { dim_value = 1, dim_param = 2 }.
    private ByteString ValueInfo(string name, string batch, long channels, string? height, string? width, long elementType, bool rank2 = false) =>
        Message(v =>
        {
            v.String(1, name);
            v.Bytes(2, Message(type => type.Bytes(1, Message(tensor =>
            {
                tensor.Int64(1, elementType);
                tensor.Bytes(2, Message(shape =>
                {
                    shape.Bytes(1, Message(d => d.String(2, batch)));
                    shape.Bytes(1, Message(d => d.Int64(1, channels)));
                    if (rank2) return;
                    shape.Bytes(1, Message(d => { if (height is null) d.Int64(1, _fixedSize); else d.String(2, height); }));
                    shape.Bytes(1, Message(d => { if (width is null) d.Int64(1, _fixedSize); else d.String(2, width); }));
                }));
            }))));
        });
}
