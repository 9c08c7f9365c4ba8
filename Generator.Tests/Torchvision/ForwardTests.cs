using System;
using System.Linq;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using ResNetGen.Generator.Tests.Infrastructure;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.Torchvision;

/// <summary>Generated forwards at run time: shapes, exact tensor lifetimes, the input check, feature maps.</summary>
public class ForwardTests
{
    [Fact]
    public void Forward_on_a_small_input_gives_logits()
    {
        using var network = new ResNet18();
        network.eval();
        using var input = torch.randn(2, 3, 64, 64);
        using var noGrad = torch.no_grad();
        using var output = network.call(input);
        Assert.Equal(new long[] { 2, 1000 }, output.shape);
        Assert.True(output.isfinite().all().item<bool>());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_forward_pass_without_a_dispose_scope_leaks_no_tensor(bool training)
    {
        using var network = new ResNet50();
        network.train(training);
        using var input = torch.randn(2, 3, 64, 64);
        var before = DeterministicWeights.LiveTensors;
        var output = network.call(input);
        if (training)
        {
            using var loss = output.sum();
            loss.backward();
        }
        output.Dispose();
        Assert.Equal(before, DeterministicWeights.LiveTensors);
        network.zero_grad();
    }

    [Fact]
    public void The_input_is_not_disposed_and_is_left_unchanged()
    {
        using var network = new ResNet18();
        network.eval();
        using var input = torch.randn(1, 3, 32, 32);
        using var copy = input.clone();
        using (torch.no_grad()) network.call(input).Dispose();
        Assert.True(input.eq(copy).all().item<bool>());
    }

    [Fact]
    public void A_wrong_input_shape_fails_with_expected_and_actual_shapes()
    {
        // Shapes the build cannot see (as from a file): constant ones are RNG0010 compile errors instead.
        static torch.Tensor Loaded(params long[] shape) => torch.zeros(shape);
        using var network = new ResNet18();
        using var gray = Loaded(1, 1, 64, 64);
        var error = Assert.Throws<ArgumentException>(() => network.call(gray));
        Assert.Contains("ResNet18.forward expects a tensor of shape [N, 3, H, W], but got [1, 1, 64, 64]", error.Message);
        using var unbatched = Loaded(3, 64, 64);
        error = Assert.Throws<ArgumentException>(() => network.call(unbatched));
        Assert.Contains("unsqueeze(0)", error.Message);
    }

    [Fact]
    public void Forward_features_give_every_stage_and_feed_the_classifier()
    {
        using var network = new ResNet50();
        network.eval();
        using var input = torch.randn(1, 3, 224, 224);
        using var noGrad = torch.no_grad();
        using var features = network.ForwardFeatures(input);
        Assert.Equal(new long[] { 1, 64, 56, 56 }, features.Stem.shape);
        Assert.Equal(new long[] { 1, 256, 56, 56 }, features.Layer1.shape);
        Assert.Equal(new long[] { 1, 512, 28, 28 }, features.Layer2.shape);
        Assert.Equal(new long[] { 1, 1024, 14, 14 }, features.Layer3.shape);
        Assert.Equal(new long[] { 1, 2048, 7, 7 }, features.Layer4.shape);
        using var pooled = features.Layer4.mean(new long[] { 2, 3 });
        using var logits = network.fc.forward(pooled);
        using var direct = network.call(input);
        // The two paths pool in different layouts (contiguous features, channels-last inside forward), so the sums
        // round differently: the suite's float32 tolerance, not bit equality.
        Tolerance.AssertClose(direct, logits, "features → pooled → fc");
    }

    [Fact]
    public void A_backbone_returns_pooled_features()
    {
        using var network = new ResNet50Backbone();
        network.eval();
        using var input = torch.randn(2, 3, 64, 64);
        using var noGrad = torch.no_grad();
        using var output = network.call(input);
        Assert.Equal(new long[] { 2, 2048 }, output.shape);
        Assert.DoesNotContain(network.state_dict().Keys, k => k.StartsWith("fc.", StringComparison.Ordinal));
    }

    [Fact]
    public void Generated_networks_move_between_devices_and_dtypes_as_modules()
    {
        using var network = new ResNet18();
        network.to(torch.float64);
        Assert.All(network.parameters(), p => Assert.Equal(torch.float64, p.dtype));
        network.eval();
        using var input = torch.randn(new long[] { 1, 3, 32, 32 }, torch.float64);
        using var noGrad = torch.no_grad();
        using var output = network.call(input);
        Assert.Equal(torch.float64, output.dtype);
    }

    [Fact]
    public void Forward_is_straight_line_code_with_one_dispose_per_intermediate()
    {
        var run = GeneratorHarness.Run(GeneratorHarness.Network("ResNet(Block.Bottleneck, 3, 4, 6, 3)", "ResNet50"));
        var source = run.Sources.Single().Value;
        var root = CSharpSyntaxTree.ParseText(source).GetRoot();
        var methods = root.DescendantNodes().OfType<MethodDeclarationSyntax>().ToList();
        var body = methods.Single(m => m.Identifier.Text == "Run");
        Assert.Empty(body.DescendantNodes().OfType<ForStatementSyntax>());
        Assert.Empty(body.DescendantNodes().OfType<ForEachStatementSyntax>());
        Assert.Empty(body.DescendantNodes().OfType<WhileStatementSyntax>());
        Assert.DoesNotContain("Sequential", body.ToString());
        Assert.DoesNotContain("input.Dispose()", body.ToString());
        var statements = body.Body!.Statements.Where(s => s is not LocalFunctionStatementSyntax).Select(s => s.ToString()).ToList();
        // 53 convolutions, each with its batch-norm, as one straight-line statement each.
        Assert.Equal(53, statements.Count(s => s.Contains("ConvNorm(", System.StringComparison.Ordinal)));
        // Every block's branch becomes x (the x it replaces is disposed by Replace), every computed shortcut is disposed.
        Assert.Equal(16, statements.Count(s => s.StartsWith("branch = ConvNorm(x, ", System.StringComparison.Ordinal)));
        Assert.Equal(16, statements.Count(s => s.StartsWith("Replace(ref x, branch);", System.StringComparison.Ordinal)));
        Assert.Equal(4, statements.Count(s => s.StartsWith("identity = ", System.StringComparison.Ordinal)));
        Assert.Equal(4, statements.Count(s => s == "identity.Dispose();"));

        // One op sequence: forward and ForwardFeatures run it, no other method calls a layer, and the ONNX graph is a
        // table of data (53 convolution steps, nothing else conv-shaped in code).
        foreach (var method in methods.Where(m => m.Identifier.Text is not "Run"))
        {
            Assert.DoesNotContain("ConvNorm(", method.ToString());
            Assert.DoesNotContain(".forward(", method.ToString());
        }
        Assert.Contains("Run(input, features: null, fold: _fused && !training)", methods.Single(m => m.Identifier.Text == "forward").ToString());
        Assert.Contains("Run(input, kept, fold: false)", methods.Single(m => m.Identifier.Text == "ForwardFeatures").ToString());
        Assert.Equal(53, source.Split("Step.ConvNorm(").Length - 1);
    }
}
