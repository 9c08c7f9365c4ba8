using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Google.Protobuf;

namespace ResNetGen;

/// <summary>An ONNX initializer as <see cref="OnnxGraphSummary"/> reads it: name, TensorProto data type (1 float, 2 uint8, 3 int8, 6 int32, 7 int64) and dimensions.</summary>
public sealed record OnnxInitializerInfo(string Name, int DataType, IReadOnlyList<long> Dims);

/// <summary>An ONNX node as <see cref="OnnxGraphSummary"/> reads it.</summary>
public sealed record OnnxNodeInfo(string OpType, string Name, IReadOnlyList<string> Inputs, IReadOnlyList<string> Outputs);

/// <summary>
/// What an ONNX model holds, read from its protobuf without ONNX Runtime: its nodes in order, their op types counted, its
/// initializers' types and the default domain's opset. For checking an export, or the graph ONNX Runtime optimised
/// (<see cref="OnnxRuntimeEngine.OptimizedOps"/>).
/// </summary>
public sealed record OnnxGraphSummary(IReadOnlyList<OnnxNodeInfo> Nodes, IReadOnlyList<OnnxInitializerInfo> Initializers, long Opset)
{
    /// <summary>Each op type and how many nodes have it.</summary>
    public IReadOnlyDictionary<string, int> OpCounts =>
        Nodes.GroupBy(n => n.OpType, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);

    /// <summary>Reads the .onnx file at <paramref name="path"/>.</summary>
    public static OnnxGraphSummary Read(string path) => Read(File.ReadAllBytes(path));

    /// <summary>Reads a serialised ModelProto (field numbers from onnx.proto).</summary>
    public static OnnxGraphSummary Read(byte[] model)
    {
        var nodes = new List<OnnxNodeInfo>();
        var initializers = new List<OnnxInitializerInfo>();
        long opset = 0;
        try
        {
            var input = new CodedInputStream(model);
            uint tag;
            while ((tag = input.ReadTag()) != 0)
            {
                switch (WireFormat.GetTagFieldNumber(tag))
                {
                    case 7: ReadGraph(input.ReadBytes(), nodes, initializers); break; // ModelProto.graph
                    case 8: opset = Math.Max(opset, ReadOpset(input.ReadBytes())); break; // opset_import
                    default: input.SkipLastField(); break;
                }
            }
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new InvalidDataException($"not an ONNX model: {e.Message}", e);
        }
        return new OnnxGraphSummary(nodes, initializers, opset);
    }

    private static long ReadOpset(ByteString bytes)
    {
        var input = bytes.CreateCodedInput();
        string domain = "";
        long version = 0;
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: domain = input.ReadString(); break;
                case 2: version = input.ReadInt64(); break;
                default: input.SkipLastField(); break;
            }
        }
        return domain is "" or "ai.onnx" ? version : 0;
    }

    private static void ReadGraph(ByteString bytes, List<OnnxNodeInfo> nodes, List<OnnxInitializerInfo> initializers)
    {
        var input = bytes.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: nodes.Add(ReadNode(input.ReadBytes())); break;
                case 5: initializers.Add(ReadTensor(input.ReadBytes())); break;
                default: input.SkipLastField(); break;
            }
        }
    }

    // NodeProto: input = 1, output = 2, name = 3, op_type = 4.
    private static OnnxNodeInfo ReadNode(ByteString bytes)
    {
        var input = bytes.CreateCodedInput();
        var (inputs, outputs) = (new List<string>(), new List<string>());
        string name = "", op = "";
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: inputs.Add(input.ReadString()); break;
                case 2: outputs.Add(input.ReadString()); break;
                case 3: name = input.ReadString(); break;
                case 4: op = input.ReadString(); break;
                default: input.SkipLastField(); break;
            }
        }
        return new OnnxNodeInfo(op, name, inputs, outputs);
    }

    // TensorProto: dims = 1 (packed or not), data_type = 2, name = 8.
    private static OnnxInitializerInfo ReadTensor(ByteString bytes)
    {
        var input = bytes.CreateCodedInput();
        var dims = new List<long>();
        var (name, type) = ("", 0);
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1 when WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited:
                {
                    var packed = input.ReadBytes().CreateCodedInput();
                    while (!packed.IsAtEnd) dims.Add(packed.ReadInt64());
                    break;
                }
                case 1: dims.Add(input.ReadInt64()); break;
                case 2: type = input.ReadInt32(); break;
                case 8: name = input.ReadString(); break;
                default: input.SkipLastField(); break;
            }
        }
        return new OnnxInitializerInfo(name, type, dims);
    }
}
