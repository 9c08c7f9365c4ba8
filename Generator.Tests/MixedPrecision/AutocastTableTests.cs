using System;
using System.Linq;
using ResNetGen.Generator.Emitting;
using ResNetGen.Generator.Planning;
using ResNetGen.Generator.Tests.Infrastructure;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.MixedPrecision;

/// <summary>The op table the generator writes into each file and the one the runtime applies are the same data.</summary>
public class AutocastTableTests
{
    private static string Words(CastPolicy policy) => policy switch
    {
        CastPolicy.LowerPrecision => AutocastTable.Low,
        CastPolicy.Float32 => AutocastTable.Float32,
        _ => AutocastTable.AsInput,
    };

    [Fact]
    public void The_generators_table_is_the_runtimes()
    {
        Assert.Equal(AutocastOps.All.Select(o => (o.Name, Words(o.Cpu), Words(o.Cuda))), AutocastTable.Ops.Select(o => (o.Op, o.Cpu, o.Cuda)));
        // autocast's lists as PyTorch writes them, for the ops where CPU and CUDA differ or that compute in low precision.
        Assert.Equal(CastPolicy.LowerPrecision, AutocastOps.Find("conv2d").For(DeviceType.CPU));
        Assert.Equal(CastPolicy.Float32, AutocastOps.Find("group_norm").For(DeviceType.CUDA));
        Assert.Equal(CastPolicy.AsInput, AutocastOps.Find("group_norm").For(DeviceType.CPU));
        Assert.Equal(CastPolicy.Float32, AutocastOps.Find("reflection_pad2d").For(DeviceType.CPU));
        Assert.Equal(CastPolicy.AsInput, AutocastOps.Find("reflection_pad2d").For(DeviceType.CUDA));
        Assert.Equal(CastPolicy.AsInput, AutocastOps.Find("batch_norm").For(DeviceType.CUDA));
        Assert.Throws<ArgumentException>(() => AutocastOps.Find("softmax"));
    }

    [Fact]
    public void Every_step_that_computes_names_its_ops_in_the_table()
    {
        var ops = AutocastTable.Ops.Select(o => o.Op).ToHashSet();
        foreach (var kind in Enum.GetValues(typeof(StepKind)).Cast<StepKind>())
        {
            var step = new StepPlan(kind, "x", "x", Module: "fc", Stride: 1);
            var named = AutocastTable.OpsOf(step).ToList();
            Assert.Equal(step.Computes, named.Count > 0);
            Assert.All(named, n => Assert.Contains(n.Op, ops));
        }
    }

    [Theory]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 6, 3)", "conv2d,linear,batch_norm,relu,add,max_pool2d,mean")]
    [InlineData("ResNet(Block.Bottleneck, 1, 1, 1, 1, Stem = Stem.DeepTiered, StemPool = StemPool.Conv, Shortcut = Shortcut.AvgDown, " +
                "Attention = Attention.EfficientChannel, AntiAlias = AntiAlias.BlurPool, DropPath = 0.1, InputSize = 64)",
        "conv2d,conv1d,linear,batch_norm,reflection_pad2d,relu,add,avg_pool2d,mean,sigmoid,mul,bernoulli")]
    [InlineData("ResNet(Block.PreActBottleneck, 3, 4, 6, 3, Stem = Stem.Fixed, Norm = Norm.GroupNorm, WeightStandardization = true)",
        "conv2d,batch_norm,group_norm,relu,add,max_pool2d,mean,constant_pad_nd")]
    [InlineData("ResNet(Block.Basic, 3, 3, 3, Stem = Stem.Cifar, BaseWidth = 16, NumClasses = 10, Shortcut = Shortcut.ZeroPad)",
        "conv2d,linear,batch_norm,relu,add,mean,constant_pad_nd,slice")]
    public void The_generated_file_carries_the_rows_of_the_ops_it_runs(string attribute, string ops)
    {
        var source = GeneratorHarness.Run(GeneratorHarness.Network(attribute)).Sources.Single().Value;
        var table = source.Split('\n').Select(l => l.Trim()).SkipWhile(l => !l.StartsWith("//   op ", StringComparison.Ordinal)).Skip(1)
            .TakeWhile(l => l.StartsWith("//   ", StringComparison.Ordinal)).Where(l => l.Length > 5 && l[5] != ' ').ToList();
        Assert.Equal(ops.Split(','), table.Select(l => l.Substring(5).Split(' ')[0]));
        foreach (var row in table)
        {
            var op = AutocastOps.Find(row.Substring(5).Split(' ')[0]);
            var policies = row.Substring(5 + op.Name.Length).TrimStart();
            Assert.StartsWith($"{Words(op.Cpu)}", policies);
            Assert.StartsWith(Words(op.Cuda), policies.Substring(Words(op.Cpu).Length).TrimStart());
        }
    }
}
