using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Runtime.Loader;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using ResNetGen.Generator.Tests.Infrastructure;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.Kernels;

/// <summary>
/// Seeded random valid configurations at default settings: each compiles, and gives finite outputs in eval and a
/// training step without crashing, with as many parameters as its ParameterCount. The networks run in a child process,
/// so that a native crash fails this test rather than the test host.
/// </summary>
public class RandomConfigurationTests
{
    private const int Seed = 20261123;
    private const int Count = 100;

    [Fact]
    public void Random_valid_configurations_give_finite_outputs_in_eval_and_training()
    {
        // Without the oneDNN check (RESNETGEN_ONEDNN=on) on an AMD EPYC Zen 5 VM this child dies of SIGFPE at the 36th draw.
        var output = Isolated.Run<RandomConfigurationTests>(nameof(RunConfigurations));
        Assert.Contains($"draws valid; all finite in eval and training", output);
    }

    [Fact]
    public void Random_valid_configurations_train_and_evaluate_in_bfloat16_close_to_float32()
    {
        // The same draws with Precision.BFloat16: its kernels are new native code, so they run in a child process too.
        var output = Isolated.Run<RandomConfigurationTests>(nameof(RunConfigurationsInBFloat16));
        Assert.Contains($"draws valid; all finite in eval and training", output);
    }

    /// <summary>Attributes drawn from every option; invalid ones are dropped by the generator's own errors below.</summary>
    internal static List<string> Draw(Random random, int count)
    {
        var result = new List<string>();
        for (var i = 0; i < count; i++)
        {
            var bottleneck = random.Next(2) == 1;
            var stages = random.Next(1, 5);
            var parts = new List<string> { bottleneck ? "Block.Bottleneck" : "Block.Basic" };
            parts.AddRange(Enumerable.Range(0, stages).Select(_ => random.Next(1, 3).ToString(CultureInfo.InvariantCulture)));
            var cifar = random.Next(2) == 1;
            if (cifar) parts.Add("Stem = Stem.Cifar");
            parts.Add("BaseWidth = " + new[] { 8, 16, 24, 32 }[random.Next(4)].ToString(CultureInfo.InvariantCulture));
            parts.Add("InChannels = " + new[] { 1, 3, 4 }[random.Next(3)].ToString(CultureInfo.InvariantCulture));
            parts.Add("NumClasses = " + new[] { 0, 2, 10 }[random.Next(3)].ToString(CultureInfo.InvariantCulture));
            parts.Add("Shortcut = Shortcut." + new[] { "Projection", "ZeroPad", "AllProjection", "AvgPoolZeroPad" }[random.Next(4)]);
            parts.Add("InputSize = " + (cifar ? random.Next(8, 41) : random.Next(24, 97)).ToString(CultureInfo.InvariantCulture));
            if (bottleneck)
            {
                if (random.Next(2) == 1) parts.Add("StrideAt = StrideAt.Conv1x1");
                if (random.Next(2) == 1) parts.Add("Groups = " + new[] { 2, 4, 8 }[random.Next(3)].ToString(CultureInfo.InvariantCulture) + ", WidthPerGroup = 8");
                if (stages > 1 && random.Next(3) == 0)
                    parts.Add("DilateStages = new[] { " + string.Join(", ", Enumerable.Range(0, stages - 1).Select(_ => random.Next(2) == 1 ? "true" : "false")) + " }");
            }
            if (random.Next(4) == 0) parts.Add("ZeroInitResidual = true");
            // timm's options, from a stream of their own so that the draws above stay what they were.
            var timm = new Random(unchecked(Seed * 31 + i));
            if (timm.Next(5) == 0)
            {
                // The pre-activation blocks (timm's resnetv2), with what they take: projection shortcuts, one group, no dilation.
                parts[0] = bottleneck ? "Block.PreActBottleneck" : "Block.PreActBasic";
                parts.RemoveAll(p => p.StartsWith("Shortcut = ", StringComparison.Ordinal) || p.StartsWith("StrideAt = ", StringComparison.Ordinal)
                                     || p.StartsWith("Groups = ", StringComparison.Ordinal) || p.StartsWith("DilateStages = ", StringComparison.Ordinal));
                // BiT's parts: the fixed stem, group-norm (groups that divide the widths, mostly), weight standardisation.
                if (!cifar && timm.Next(3) == 0) parts.Add("Stem = Stem.Fixed");
                if (timm.Next(2) == 1)
                    parts.Add("Norm = Norm.GroupNorm, NormGroups = " + new[] { 1, 2, 4, 8, 32 }[timm.Next(5)].ToString(CultureInfo.InvariantCulture));
                if (timm.Next(2) == 1) parts.Add("WeightStandardization = true" + (timm.Next(2) == 1 ? ", WeightStandardizationEps = 1e-8" : ""));
                result.Add("ResNet(" + string.Join(", ", parts) + ")");
                continue;
            }
            if (!cifar)
            {
                var stem = new[] { "ImageNet", "Deep", "DeepTiered" }[timm.Next(3)];
                if (stem != "ImageNet") parts.Add("Stem = Stem." + stem);
                if (stem != "ImageNet" && timm.Next(2) == 1) parts.Add("StemWidth = " + new[] { 8, 16, 32 }[timm.Next(3)].ToString(CultureInfo.InvariantCulture));
                if (timm.Next(4) == 0) parts.Add("StemPool = StemPool.Conv");
            }
            if (timm.Next(3) == 0)
            {
                parts.RemoveAll(p => p.StartsWith("Shortcut = ", StringComparison.Ordinal));
                parts.Add("Shortcut = Shortcut.AvgDown");
            }
            var attention = timm.Next(3);
            if (attention == 1) parts.Add("Attention = Attention.SqueezeExcite" + (timm.Next(2) == 1 ? ", AttentionRatio = 0.25" : ""));
            if (attention == 2) parts.Add("Attention = Attention.EfficientChannel");
            var antiAlias = timm.Next(4);
            if (antiAlias == 1) parts.Add("AntiAlias = AntiAlias.AvgPool");
            if (antiAlias == 2) parts.Add("AntiAlias = AntiAlias.BlurPool");
            if (timm.Next(3) == 0) parts.Add("DropPath = " + new[] { "0.1", "0.3" }[timm.Next(2)]);
            result.Add("ResNet(" + string.Join(", ", parts) + ")");
        }
        return result;
    }

    internal static void RunConfigurations() => RunConfigurations(Precision.Float32);

    internal static void RunConfigurationsInBFloat16() => RunConfigurations(Precision.BFloat16);

    /// <summary>
    /// Compiles the draws and runs each valid one in a training step and in eval; in a low <paramref name="precision"/>
    /// the outputs and gradients must be float32, and the training output within 20% of the float32 one's largest value (a sanity bound) but not equal to it.
    /// </summary>
    private static void RunConfigurations(Precision precision)
    {
        var attributes = Draw(new Random(Seed), Count);
        var source = "using ResNetGen;\nnamespace Random;\n" + string.Join("\n", attributes.Select((a, i) => $"[{a}]\npublic partial class Net{i} {{ }}"));
        var run = GeneratorHarness.Run(source);
        // The generator's errors (e.g. RNG0008 for an average-pooling shortcut on an odd map) mark invalid draws; drop those.
        var invalid = run.GeneratorDiagnostics.Where(d => d.Severity == DiagnosticSeverity.Error)
            .Select(d => d.Location.SourceTree!.GetRoot().FindNode(d.Location.SourceSpan).AncestorsAndSelf().OfType<ClassDeclarationSyntax>().First().Identifier.Text)
            .ToHashSet();
        var valid = Enumerable.Range(0, Count).Where(i => !invalid.Contains($"Net{i}")).ToList();
        Assert.True(valid.Count >= Count / 2, $"only {valid.Count} of {Count} draws are valid");
        // Every option of timm's family reaches at least one network that runs.
        foreach (var option in new[] { "Block.PreActBasic", "Block.PreActBottleneck", "Stem.Deep", "Stem.DeepTiered", "StemPool.Conv", "Shortcut.AvgDown", "Attention.SqueezeExcite", "Attention.EfficientChannel",
                     "AntiAlias.AvgPool", "AntiAlias.BlurPool", "DropPath = ", "AttentionRatio = ", "StemWidth = ", "Stem.Fixed", "Norm.GroupNorm",
                     "WeightStandardization = true", "WeightStandardizationEps = " })
            Assert.True(valid.Any(i => attributes[i].Contains(option, StringComparison.Ordinal)), $"no valid draw has {option}");
        Assert.Empty(run.CompilationDiagnostics.Where(d => d.Severity == DiagnosticSeverity.Error && !invalid.Contains(ClassOf(d))));

        using var image = new MemoryStream();
        var emitted = run.Output.Emit(image);
        Assert.True(emitted.Success, string.Join("\n", emitted.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error && !invalid.Contains(ClassOf(d)))));
        var assembly = new AssemblyLoadContext("random-configurations").LoadFromStream(new MemoryStream(image.ToArray()));
        foreach (var i in valid)
        {
            var what = $"Net{i}: [{attributes[i]}]";
            var type = assembly.GetType($"Random.Net{i}")!;
            using var network = (torch.nn.Module<torch.Tensor, torch.Tensor>)Activator.CreateInstance(type)!;
            Assert.Equal((long)type.GetField("ParameterCount")!.GetValue(null)!, network.parameters().Sum(p => p.numel()));
            var channels = (int)type.GetField("InputChannels")!.GetValue(null)!;
            var size = (int)type.GetField("InputSize")!.GetValue(null)!;
            torch.manual_seed(i);
            using var input = torch.randn(2, channels, size, size);
            network.train();
            ((IResNet)network).Precision = precision;
            Console.WriteLine($"running {what}"); // the last such line names the draw if the process dies
            using (var output = network.call(input))
            {
                using var loss = output.square().mean();
                loss.backward();
                Assert.True(output.isfinite().all().item<bool>(), what + ": a training forward is not finite");
                Assert.Equal(torch.ScalarType.Float32, output.dtype);
                Assert.True(network.parameters().All(p => p.grad is null || p.grad.isfinite().all().item<bool>() && p.grad.dtype == torch.ScalarType.Float32),
                    what + ": a gradient is not finite, or not float32");
                // A sanity bound against float32 in training mode, where the batch statistics keep the activations in range
                // (in eval an untrained network's default running statistics let them grow layer by layer, and bfloat16's
                // error with them, as in PyTorch's autocast); drop path draws its own masks, so its networks are left out.
                // A batch-norm over two samples at 1×1 turns bfloat16's rounding into up to ~7% of the output here, the
                // same as autocast's: AutocastTests compares a random sample with autocast itself.
                if (precision != Precision.Float32 && !attributes[i].Contains("DropPath", StringComparison.Ordinal))
                {
                    ((IResNet)network).Precision = Precision.Float32;
                    using var exact = network.call(input);
                    ((IResNet)network).Precision = precision;
                    using var difference = exact.sub(output);
                    var (distance, scale) = (difference.abs().max().item<float>(), exact.abs().max().item<float>());
                    Assert.True(distance > 0 && distance <= 0.2 * scale, $"{what}: {precision} is {distance:G3} from float32 in training (of {scale:G3})");
                }
            }
            network.eval();
            using var noGrad = torch.no_grad();
            using var eval = network.call(input);
            Assert.True(eval.isfinite().all().item<bool>(), what + ": an eval forward is not finite");
            Assert.Equal(torch.ScalarType.Float32, eval.dtype);
            Console.WriteLine($"ok {what}");
        }
        Console.WriteLine($"{valid.Count} of {Count} draws valid; all finite in eval and training");

        string ClassOf(Diagnostic d) => d.Location.SourceTree?.GetRoot().FindNode(d.Location.SourceSpan).AncestorsAndSelf().OfType<ClassDeclarationSyntax>().FirstOrDefault()?.Identifier.Text ?? "";
    }
}
