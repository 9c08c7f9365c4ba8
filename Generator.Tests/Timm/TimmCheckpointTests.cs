using System.IO;
using System.Linq;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.Torchvision;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.Timm;

/// <summary>The small timm ResNet of make_timm_reference.py's tiny_checkpoint, declared with the same options.</summary>
[ResNet(Block.Basic, 1, 1, 1, 1, BaseWidth = 8, Stem = Stem.DeepTiered, StemWidth = 8, StemPool = StemPool.Conv, Shortcut = Shortcut.AvgDown,
    Attention = Attention.SqueezeExcite, AntiAlias = AntiAlias.BlurPool, NumClasses = 5, InputSize = 32)]
public partial class TinyTimm { }

/// <summary>A model.safetensors written from timm's own state_dict loads strictly and completely, and gives timm's outputs.</summary>
public class TimmCheckpointTests
{
    private static string Reference(string name) => Path.Combine(DeterministicWeights.ReferenceFolder, "timm", name);

    private static torch.Tensor Input() => torch.tensor(DeterministicWeights.ReadFloats(Path.Combine("timm", "tiny_timm.input.bin")), new long[] { 2, 3, 32, 32 });

    [Theory]
    [InlineData("tiny_timm.safetensors", 7L)]
    [InlineData("tiny_timm_nocounters.safetensors", 0L)]
    public void A_timm_checkpoint_loads_strictly_and_gives_timms_outputs(string file, long counter)
    {
        using var network = new TinyTimm();
        var report = Safetensors.Load(network, Reference(file));
        var counters = network.state_dict().Keys.Where(k => k.EndsWith(".num_batches_tracked", System.StringComparison.Ordinal)).ToList();
        Assert.Equal(network.state_dict().Count - (counter == 0 ? counters.Count : 0), report.Loaded.Count);
        // Counters the file lacks stay the module's (0 in a new network), as PyTorch's load_state_dict leaves them.
        Assert.Equal(counter == 0 ? counters : new System.Collections.Generic.List<string>(), report.CountersKept);
        Assert.All(counters, k => Assert.Equal(counter, network.state_dict()[k].item<long>()));
        network.eval();
        using var input = Input();
        using var noGrad = torch.no_grad();
        using var output = network.call(input);
        Tolerance.AssertClose(DeterministicWeights.ReadFloats(Path.Combine("timm", "tiny_timm.eval.bin")), output, file);
    }

    [Fact]
    public void A_missing_weight_is_still_refused_strictly()
    {
        var tensors = Safetensors.Read(Reference("tiny_timm_nocounters.safetensors"));
        tensors.Remove("layer2.0.se.fc1.bias");
        var path = Path.Combine(Path.GetTempPath(), $"tiny-timm-{System.Guid.NewGuid():N}.safetensors");
        try
        {
            Safetensors.Write(path, tensors);
            using var network = new TinyTimm();
            var error = Assert.Throws<WeightFileException>(() => Safetensors.Load(network, path));
            Assert.Contains("missing key layer2.0.se.fc1.bias", error.Message);
            Assert.DoesNotContain("num_batches_tracked", error.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
