using System;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.Onnx;
using ResNetGen.Generator.Tests.Torchvision;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.Timm;

/// <summary>One stage of two basic blocks with identity shortcuts: block 0 drops at 0, block 1 at DropPath.</summary>
[ResNet(Block.Basic, 2, Stem = Stem.Cifar, BaseWidth = 4, InChannels = 1, NumClasses = 0, InputSize = 4, DropPath = 0.3)]
public partial class TwoBlocksDropPath { }

/// <summary>Stochastic depth: timm's schedule, its per-sample statistics, and nothing of it outside training.</summary>
public sealed class DropPathTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("resnetgen-droppath-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Theory]
    [InlineData("resnet50d", "ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown, DropPath = {0})")]
    [InlineData("resnet18d", "ResNet(Block.Basic, 2, 2, 2, 2, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown, DropPath = {0})")]
    [InlineData("resnet10t", "ResNet(Block.Basic, 1, 1, 1, 1, Stem = Stem.DeepTiered, Shortcut = Shortcut.AvgDown, DropPath = {0})")]
    public void The_schedule_is_timms_block_for_block(string model, string attribute)
    {
        // timm's file: the rate asked for, then each block's drop probability (0 where it builds no DropPath).
        var lines = File.ReadAllLines(Path.Combine(DeterministicWeights.ReferenceFolder, "timm", model + ".droppath.txt")).Where(l => l.Length > 0).ToArray();
        var rate = lines[0];
        var expected = lines.Skip(1).Select(l => double.Parse(l, CultureInfo.InvariantCulture)).ToArray();
        var source = GeneratorHarness.Run(GeneratorHarness.Network(string.Format(CultureInfo.InvariantCulture, attribute, rate))).Sources.Single().Value;
        // The generated Run drops each block's branch with its rate as a literal; the first block's rate is 0 and has no step.
        var generated = Regex.Matches(source, @"DropPath\(branch, ([^,]+), training\)").Select(m => double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(0.0, expected[0]);
        Assert.Equal(expected.Skip(1), generated); // exact: the same doubles, computed in the same order
    }

    /// <summary>
    /// The network's branches made constant: block 0's adds 0 and block 1's adds 1 to every element (batch-norm weight 0,
    /// bias 0 or 1), so each sample's stage output minus the stem's is 0 where block 1's branch was dropped, 1 / (1 − 0.3)
    /// where it was kept, and 1 without drop path.
    /// </summary>
    private static TwoBlocksDropPath Constant()
    {
        var network = new TwoBlocksDropPath();
        using var noGrad = torch.no_grad();
        network.layer1_0_bn2.weight!.zero_();
        network.layer1_0_bn2.bias!.zero_();
        network.layer1_1_bn2.weight!.zero_();
        network.layer1_1_bn2.bias!.fill_(1);
        return network;
    }

    [Fact]
    public void In_training_each_sample_is_dropped_at_its_blocks_rate_and_survivors_are_scaled()
    {
        using var network = Constant();
        network.train();
        torch.manual_seed(2026);
        const int samples = 8000;
        using var input = torch.rand(samples, 1, 4, 4);
        using var features = network.ForwardFeatures(input);
        using var added = (features.Layer1 - features.Stem).reshape(samples, -1);
        var perSample = added.mean(new long[] { 1 }).data<float>().ToArray();
        var keptValue = (float)(1 / (1 - 0.3));
        // (stem + added) − stem rounds: within 1e-5.
        var dropped = perSample.Count(v => Math.Abs(v) < 1e-5);
        var kept = perSample.Count(v => Math.Abs(v - keptValue) < 1e-5);
        Assert.Equal(samples, dropped + kept); // whole samples, each either dropped or kept and scaled by 1/0.7
        using (var spread = added.max(1).values - added.min(1).values) Assert.True(spread.max().item<float>() < 1e-5); // the same for every element of a sample
        // 0.3 of 8000 samples: ± 4 standard deviations (0.0051 each).
        Assert.InRange(dropped / (double)samples, 0.3 - 0.021, 0.3 + 0.021);
    }

    [Fact]
    public void In_eval_nothing_is_dropped_or_scaled()
    {
        using var network = Constant();
        network.eval();
        using var input = torch.rand(64, 1, 4, 4);
        using var noGrad = torch.no_grad();
        using var features = network.ForwardFeatures(input);
        using var added = features.Layer1 - features.Stem;
        using var off = (added - 1).abs();
        Assert.True(off.max().item<float>() < 1e-5, $"stage output − stem is off 1 by up to {off.max().item<float>()}");
    }

    [Fact]
    public void Eval_the_fold_and_the_onnx_graph_are_those_of_the_network_without_drop_path()
    {
        using var input = DeterministicWeights.Input();
        var expected = DeterministicWeights.ReadFloats(Path.Combine("timm", "resnet50d.eval.bin"));
        using var network = new ResNet50dDropPath();
        DeterministicWeights.Apply(network);
        network.eval();
        using (torch.no_grad())
        using (var output = network.call(input))
            Tolerance.AssertClose(expected, output, "resnet50d with drop path, in eval");
        using var plain = new ResNet50d();
        var withDropPath = network.ExportOnnx(Path.Combine(_folder, "droppath.onnx"));
        var without = plain.ExportOnnx(Path.Combine(_folder, "plain.onnx"));
        Assert.Equal(without.Nodes, withDropPath.Nodes);
        using (var onnx = torch.tensor(OnnxExportTests.OnnxRuntime(withDropPath.Path, input)).reshape(2, -1))
            Tolerance.AssertClose(expected, onnx, "resnet50d with drop path on ONNX Runtime");
        network.FuseForInference();
        using (torch.no_grad())
        using (var folded = network.call(input))
            Tolerance.AssertClose(expected, folded, "resnet50d with drop path, folded");
    }

    /// <summary>
    /// On a real bottleneck block in training (layer4's only block, rate 0.2 by the schedule, with a projection or an
    /// avg-down shortcut): given what the block received (layer3's output), its output for each sample is either the
    /// shortcut alone or the shortcut plus the branch scaled by 1 / 0.8 — the branch and shortcut recomputed here with
    /// libtorch's plain ops from timm's definitions (batch statistics, as in training) — and about 0.2 of the samples are
    /// dropped. The mask is whatever libtorch's generator drew: it is read from the output, not assumed.
    /// </summary>
    [Theory]
    [InlineData("projection")]
    [InlineData("avg-down")]
    public void On_a_real_bottleneck_block_each_samples_branch_is_dropped_or_scaled_at_the_blocks_rate(string shortcut)
    {
        using var network = shortcut == "projection" ? (torch.nn.Module<torch.Tensor, torch.Tensor>)new BottleneckDropPath() : new AvgDownDropPath();
        DeterministicWeights.Apply(network);
        network.train();
        const int samples = 600;
        using var input = DeterministicWeights.Input(samples, 3, 64, 64);
        using var noGrad = torch.no_grad();
        dynamic net = network;
        using var features = (IDisposable)net.ForwardFeatures(input);
        torch.Tensor layer3 = ((dynamic)features).Layer3, layer4 = ((dynamic)features).Layer4;
        torch.Tensor Norm(torch.Tensor t, TorchSharp.Modules.BatchNorm2d bn) => torch.nn.functional.batch_norm(t, null, null, bn.weight, bn.bias, true, 0.1, bn.eps);
        torch.Tensor Conv(torch.Tensor t, TorchSharp.Modules.Conv2d conv, long stride = 1, long padding = 0) =>
            torch.nn.functional.conv2d(t, conv.weight!, null, strides: new[] { stride, stride }, padding: new[] { padding, padding });
        using var scope = torch.NewDisposeScope();
        var branch = Norm(Conv(Norm(Conv(Norm(Conv(layer3, net.layer4_0_conv1), net.layer4_0_bn1).relu(), net.layer4_0_conv2, 2, 1), net.layer4_0_bn2).relu(),
            net.layer4_0_conv3), net.layer4_0_bn3);
        var identity = shortcut == "projection"
            ? Norm(Conv(layer3, net.layer4_0_downsample_0, 2), net.layer4_0_downsample_1)
            : Norm(Conv(torch.nn.functional.avg_pool2d(layer3, 2, 2, ceil_mode: true, count_include_pad: false), net.layer4_0_downsample_1), net.layer4_0_downsample_2);
        var dropped = identity.relu().reshape(samples, -1);
        var kept = (identity + branch / 0.8).relu().reshape(samples, -1);
        var actual = layer4.reshape(samples, -1);
        var scale = actual.abs().max().item<float>();
        var offDropped = (actual - dropped).abs().amax(new long[] { 1 }).data<float>().ToArray();
        var offKept = (actual - kept).abs().amax(new long[] { 1 }).data<float>().ToArray();
        var (droppedCount, keptCount) = (0, 0);
        for (var i = 0; i < samples; i++)
        {
            var isDropped = offDropped[i] <= 1e-5 * scale;
            var isKept = offKept[i] <= 1e-5 * scale;
            Assert.True(isDropped ^ isKept, $"{shortcut}: sample {i} is {offDropped[i]:G3} from dropped and {offKept[i]:G3} from kept (scale {scale:G3})");
            if (isDropped) droppedCount++; else keptCount++;
        }
        // 0.2 of 600: ± 4 standard deviations (9.8 samples each).
        Assert.InRange(droppedCount, 81, 159);
        Assert.Equal(samples, droppedCount + keptCount);
    }

    public static TheoryData<string> RealNetworks() => new() { "resnet50d (avg-down shortcuts)", "bottleneck (projection shortcuts)", "resnet18d (basic blocks)" };

    private static torch.nn.Module<torch.Tensor, torch.Tensor> Real(string name) => name.Split(' ')[0] switch
    {
        "resnet50d" => new ResNet50dDropPath(),
        "bottleneck" => new BottleneckDropPath(),
        _ => new ResNet18dDropPath(),
    };

    /// <summary>
    /// On real networks in training: drop path makes a train-mode forward random (two draws differ, while the same network
    /// without drop path gives one output whatever the generator holds), and a training step gives every parameter a
    /// finite gradient. (Not "the same seed twice gives the same output": tests running beside this one draw from
    /// libtorch's global generator too.) 16 pictures: even resnet18d's low rates leave no draw without a drop but about
    /// once in a million runs.
    /// </summary>
    [Theory]
    [MemberData(nameof(RealNetworks))]
    public void A_training_step_with_drop_path_draws_per_seed_and_every_parameter_gets_a_finite_gradient(string name)
    {
        using var network = Real(name);
        DeterministicWeights.Apply(network);
        network.train();
        using var input = DeterministicWeights.Input(16, 3, 64, 64);
        torch.Tensor Forward(torch.nn.Module<torch.Tensor, torch.Tensor> net, long seed)
        {
            torch.manual_seed(seed);
            using var noGrad = torch.no_grad();
            return net.call(input);
        }
        using (var a = Forward(network, 1))
        using (var b = Forward(network, 2))
            Assert.False(a.allclose(b, 1e-4, 1e-4), $"{name}: two draws gave the same train-mode output: nothing was dropped");
        if (name.StartsWith("resnet50d", StringComparison.Ordinal))
        {
            using var plain = new ResNet50d();
            DeterministicWeights.Apply(plain);
            plain.train();
            using var x = Forward(plain, 1);
            using var y = Forward(plain, 2);
            Assert.Equal(x.data<float>().ToArray(), y.data<float>().ToArray()); // without drop path nothing is drawn
        }

        torch.manual_seed(5);
        using var output = network.call(input);
        using var loss = output.square().mean();
        loss.backward();
        Assert.True(output.isfinite().all().item<bool>());
        var parameters = network.named_parameters().ToList();
        Assert.NotEmpty(parameters);
        foreach (var (key, parameter) in parameters)
        {
            Assert.True(parameter.grad is not null, $"{name}: {key} got no gradient");
            Assert.True(parameter.grad!.isfinite().all().item<bool>(), $"{name}: {key} has a non-finite gradient");
        }
    }
}

/// <summary>Bottleneck blocks with avg-down shortcuts and timm's deep stem (resnet50d's layout) and drop path, small: layer4 one block at 0.2.</summary>
[ResNet(Block.Bottleneck, 1, 1, 1, 1, BaseWidth = 16, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown, DropPath = 0.2, NumClasses = 5, InputSize = 64)]
public partial class AvgDownDropPath { }

/// <summary>Bottleneck blocks with projection shortcuts (torchvision's layout) and drop path, small.</summary>
[ResNet(Block.Bottleneck, 1, 2, 1, 1, BaseWidth = 16, DropPath = 0.2, NumClasses = 5, InputSize = 64)]
public partial class BottleneckDropPath { }
