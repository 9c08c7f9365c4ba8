using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.Json;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.Torchvision;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.PyTorch;

/// <summary>One network to check against its PyTorch twin: how to build it, its input's shape, whether to compare a training forward too.</summary>
public sealed record TwinCase(string Name, Func<torch.nn.Module<torch.Tensor, torch.Tensor>> Create, long[] InputShape, bool Train = true);

/// <summary>
/// Runs generated PyTorch twins on Debian's PyTorch (python3-torch) against the C# networks: each network gets the
/// deterministic weights, writes them as safetensors with its state_dict keys, and computes its eval (and train-mode)
/// outputs; twin_check.py builds each twin, compares the state_dict entry by entry, loads the weights strictly and
/// computes the same outputs. A machine without python3 and torch fails here, naming the install.
/// </summary>
public static class Twins
{
    /// <summary>The relative tolerance of the issue: 1e-5 of the largest output (float32).</summary>
    public const double Relative = 1e-5;

    /// <summary>
    /// The relative tolerance for comparing <paramref name="eval32"/> with another float32 computation of the same
    /// network: <see cref="Relative"/>, or twice this computation's own distance from <paramref name="eval64"/> (the same
    /// network and input in float64) where that is larger. Two correct float32 computations on different kernels (this
    /// libtorch's and PyTorch's, on a CPU where they differ) are each that close to float64, so within twice it of each
    /// other; a deep network's float32 rounding alone can exceed 1e-5 (BiT-50: 1.7e-5 on the Zen 5 VM, with oneDNN or
    /// without), while a wrong twin is off by orders of magnitude more.
    /// </summary>
    public static double RelativeFor(torch.Tensor eval32, torch.Tensor eval64)
    {
        using var scope = torch.NewDisposeScope();
        var scale = eval64.abs().max().item<double>();
        var own = eval32.to(torch.float64).sub(eval64).abs().max().item<double>() / scale;
        return double.IsFinite(own) ? Math.Max(Relative, 2 * own) : Relative;
    }

    /// <summary>Train mode is compared in float64 (see <see cref="Check"/>), where the same computation agrees far closer.</summary>
    public const double TrainRelative = 1e-9;

    /// <summary>
    /// Checks <paramref name="cases"/> in <paramref name="folder"/>. With RESNETGEN_TWIN_EXPORT set to a folder, the set
    /// is also copied there as <paramref name="set"/>/ without its weight files (twin_check.py rebuilds the deterministic
    /// weights) and with the C# outputs, so that <c>python3 Generator.Tests/PyTorch/twin_check.py SET/manifest.json</c>
    /// checks the same cases on another PyTorch (README: "Training past one machine").
    /// </summary>
    public static (int Eval, int Train) Check(IReadOnlyList<TwinCase> cases, string folder, [System.Runtime.CompilerServices.CallerMemberName] string set = "") =>
        CheckAndCopy(cases, folder, Environment.GetEnvironmentVariable("RESNETGEN_TWIN_EXPORT") is { Length: > 0 } export ? Path.Combine(export, set) : null);

    /// <summary>As <see cref="Check"/>, copying the set to <paramref name="exportTo"/> if given. Returns how many outputs were compared, in eval and in train mode.</summary>
    public static (int Eval, int Train) CheckAndCopy(IReadOnlyList<TwinCase> cases, string folder, string? exportTo)
    {
        var manifest = new List<Dictionary<string, object>>();
        var expected = new Dictionary<string, (float[] Eval, long[] EvalShape, double[]? Train, double Relative)>();
        foreach (var c in cases)
        {
            using var network = c.Create();
            var source = (string?)network.GetType().GetField("PyTorchSource")?.GetValue(null)
                         ?? throw new InvalidOperationException($"{network.GetType().Name} has no PyTorchSource");
            DeterministicWeights.Apply(network);
            // File names relative to the manifest's folder, so that the set can travel.
            var module = c.Name + "_twin.py";
            File.WriteAllText(Path.Combine(folder, module), source);
            var weights = c.Name + ".safetensors";
            var state = network.state_dict();
            Safetensors.Write(Path.Combine(folder, weights), state);
            var keys = state.Select(p => new object[] { p.Key, Dtype(p.Value.dtype), p.Value.shape }).ToList();
            using var input = DeterministicWeights.Input(c.InputShape);
            var inputPath = c.Name + ".input.bin";
            DeterministicWeights.WriteFloats(Path.Combine(folder, inputPath), input);
            using var noGrad = torch.no_grad();
            network.eval();
            using var eval = network.call(input);
            // The same eval in float64 sets how close two float32 computations must be (RelativeFor).
            network.to(torch.float64);
            using var input64 = input.to(torch.float64);
            double relative;
            using (var eval64 = network.call(input64)) relative = RelativeFor(eval, eval64);
            double[]? train = null;
            if (c.Train)
            {
                // In float64: a float32 batch-norm over a batch of two at 2×2 (layer4 at 64×64) turns the two libtorch builds'
                // rounding into ~1e-4 of the output; in float64 the same computation agrees to 1e-9 and more.
                network.train();
                using var trained = network.call(input64);
                train = trained.data<double>().ToArray();
            }
            expected[c.Name] = (eval.data<float>().ToArray(), eval.shape, train, relative);
            // The C# outputs beside them: twin_check.py compares too (by the same rules), which is what a set checked
            // elsewhere relies on; here the assertions below are the test's.
            DeterministicWeights.WriteFloats(Path.Combine(folder, c.Name + ".cs.eval.out"), eval);
            if (train is not null)
                File.WriteAllBytes(Path.Combine(folder, c.Name + ".cs.train64.out"), System.Runtime.InteropServices.MemoryMarshal.AsBytes(train.AsSpan()).ToArray());
            var entry = new Dictionary<string, object>
            {
                ["name"] = c.Name, ["module"] = module, ["weights"] = weights, ["keys"] = keys, ["input"] = inputPath,
                ["input_shape"] = c.InputShape, ["train"] = c.Train, ["expected_eval"] = c.Name + ".cs.eval.out", ["relative"] = relative,
            };
            if (train is not null)
            {
                entry["expected_train64"] = c.Name + ".cs.train64.out";
                entry["train_relative"] = TrainRelative;
            }
            manifest.Add(entry);
        }
        var manifestPath = Path.Combine(folder, "manifest.json");
        File.WriteAllText(manifestPath, JsonSerializer.Serialize(manifest));
        var output = RunPython(folder, Path.Combine(Repository.Root(), "Generator.Tests", "PyTorch", "twin_check.py"), manifestPath);
        var failures = output.Split('\n').Where(l => l.StartsWith("FAIL ", StringComparison.Ordinal)).ToList();
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        var (evalCompared, trainCompared) = (0, 0);
        foreach (var c in cases)
        {
            Assert.Contains("ok " + c.Name, output);
            var (eval, shape, train, relative) = expected[c.Name];
            using var ours = torch.tensor(eval).reshape(shape);
            using var theirs = torch.tensor(DeterministicWeights.ReadFloats(Path.Combine(folder, c.Name + ".eval.out"))).reshape(shape);
            Tolerance.AssertClose(ours, theirs, c.Name + ": the twin's eval output", relative);
            evalCompared++;
            if (train is null) continue;
            using var oursTrain = torch.tensor(train).reshape(shape);
            using var theirsTrain = torch.tensor(DeterministicWeights.ReadDoubles(Path.Combine(folder, c.Name + ".train64.out"))).reshape(shape);
            Tolerance.AssertClose(oursTrain, theirsTrain, c.Name + ": the twin's train-mode output (float64)", TrainRelative);
            trainCompared++;
        }
        if (exportTo is not null) Export(manifest, folder, exportTo);
        return (evalCompared, trainCompared);
    }

    /// <summary>
    /// Up to <paramref name="count"/> networks of <paramref name="draws"/> attributes drawn by the random-configuration
    /// tests' generator from <paramref name="random"/>, those the generator accepts, compiled and loaded in this process
    /// (each attribute printed); drop path's draw their own masks, so they are compared in eval only.
    /// </summary>
    public static List<TwinCase> RandomCases(Random random, int draws, int count)
    {
        var attributes = Kernels.RandomConfigurationTests.Draw(random, draws);
        var source = "using ResNetGen;\nnamespace Random;\n" + string.Join("\n", attributes.Select((a, i) => $"[{a}]\npublic partial class Net{i} {{ }}"));
        var run = GeneratorHarness.Run(source);
        var invalid = run.GeneratorDiagnostics.Where(d => d.Severity == Microsoft.CodeAnalysis.DiagnosticSeverity.Error)
            .Select(d => d.Location.SourceTree!.GetRoot().FindNode(d.Location.SourceSpan).AncestorsAndSelf()
                .OfType<Microsoft.CodeAnalysis.CSharp.Syntax.ClassDeclarationSyntax>().First().Identifier.Text)
            .ToHashSet();
        using var image = new MemoryStream();
        var emitted = run.Output.Emit(image);
        Assert.True(emitted.Success, string.Join("\n", emitted.Diagnostics.Where(d => d.Severity == Microsoft.CodeAnalysis.DiagnosticSeverity.Error).Take(5)));
        var assembly = new System.Runtime.Loader.AssemblyLoadContext("random-twins").LoadFromStream(new MemoryStream(image.ToArray()));
        var cases = new List<TwinCase>();
        for (var i = 0; i < attributes.Count && cases.Count < count; i++)
        {
            if (invalid.Contains($"Net{i}")) continue;
            var type = assembly.GetType($"Random.Net{i}")!;
            var channels = (int)type.GetField("InputChannels")!.GetValue(null)!;
            var size = (int)type.GetField("InputSize")!.GetValue(null)!;
            Console.WriteLine($"net{i}: [{attributes[i]}]");
            cases.Add(new TwinCase($"net{i}", () => (torch.nn.Module<torch.Tensor, torch.Tensor>)Activator.CreateInstance(type)!, new long[] { 2, channels, size, size },
                Train: !attributes[i].Contains("DropPath", StringComparison.Ordinal)));
        }
        return cases;
    }

    /// <summary>The set without its weights and this machine's twin outputs: the twins, inputs, C# outputs and the manifest.</summary>
    private static void Export(List<Dictionary<string, object>> manifest, string folder, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var entry in manifest)
        {
            entry.Remove("weights");
            foreach (var file in new[] { "module", "input", "expected_eval", "expected_train64" })
                if (entry.TryGetValue(file, out var name))
                    File.Copy(Path.Combine(folder, (string)name), Path.Combine(to, (string)name), overwrite: true);
        }
        File.WriteAllText(Path.Combine(to, "manifest.json"), JsonSerializer.Serialize(manifest));
    }

    private static string Dtype(torch.ScalarType type) => type switch
    {
        torch.ScalarType.Float32 => "float32",
        torch.ScalarType.Float64 => "float64",
        torch.ScalarType.Int64 => "int64",
        _ => type.ToString().ToLowerInvariant(),
    };

    /// <summary>
    /// The Python to run: RESNETGEN_PYTHON if set, else Debian's /usr/bin/python3 (where apt's python3-torch installs, ahead
    /// of a python3 of another installation earlier on the PATH), else python3 from the PATH.
    /// </summary>
    public static string Python =>
        Environment.GetEnvironmentVariable("RESNETGEN_PYTHON") is { Length: > 0 } chosen ? chosen
        : File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

    /// <summary>
    /// Debian's python3-torch, python3-numpy and python3-pil (Pillow: train_ddp.py resizes pictures as the sample does), installed once per process where missing (README: a fresh Debian 12 with
    /// the .NET SDK runs the tests as they are), through apt-get as root or passwordless sudo; null when nothing was to
    /// do, else what happened. Not attempted for a RESNETGEN_PYTHON of the user's own.
    /// </summary>
    private static readonly Lazy<string?> Setup = new(InstallTorchIfMissing, System.Threading.LazyThreadSafetyMode.ExecutionAndPublication);

    private static bool HasTorch()
    {
        try
        {
            return ChildProcess.Run(new ProcessStartInfo(Python, new[] { "-c", "import torch, numpy, PIL" }), TimeSpan.FromMinutes(2)).ExitCode == 0;
        }
        catch (Win32Exception)
        {
            return false; // no python3 at all: apt-get installs it with python3-torch
        }
    }

    private static string? InstallTorchIfMissing()
    {
        if (Environment.GetEnvironmentVariable("RESNETGEN_PYTHON") is { Length: > 0 } || HasTorch()) return null;
        if (!File.Exists("/usr/bin/apt-get")) return "python3-torch is missing and this machine has no apt-get";
        var root = Environment.UserName == "root";
        string Run(params string[] command)
        {
            var start = new ProcessStartInfo(root ? command[0] : "sudo");
            if (!root) start.ArgumentList.Add("-n");
            foreach (var part in root ? command.Skip(1) : command) start.ArgumentList.Add(part);
            start.Environment["DEBIAN_FRONTEND"] = "noninteractive";
            var limit = TimeSpan.FromMinutes(15);
            var exit = ChildProcess.Run(start, limit);
            return exit.ExitCode == 0 && !exit.TimedOut ? "" : $"'{string.Join(" ", command)}' failed ({exit.Describe(limit)}): {exit.Error.Trim()}";
        }
        try
        {
            // Waits for another apt-get (a parallel test process) rather than failing on its lock.
            var problem = Run("apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-qq");
            if (problem.Length == 0)
                problem = Run("apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq", "--no-install-recommends", "python3-torch", "python3-numpy", "python3-pil");
            return problem.Length == 0 ? "installed python3-torch, python3-numpy and python3-pil with apt-get" : problem;
        }
        catch (Win32Exception e)
        {
            return $"python3-torch is missing and apt-get could not be run ({e.Message}): not root and no sudo";
        }
    }

    /// <summary>
    /// Runs <paramref name="script"/> under torchrun with <paramref name="processes"/> processes on this machine; returns
    /// their console output. Debian's torchrun (PyTorch 1.13 on Python 3.11) needs --redirects 1 --tee 1: its default
    /// ("0") becomes None under Python 3.11's enum and fails before starting anything.
    /// </summary>
    public static string RunTorchrun(string folder, int processes, string script, params string[] arguments)
    {
        _ = Setup.Value;
        var start = new ProcessStartInfo(Python) { WorkingDirectory = folder };
        foreach (var a in new[] { "-m", "torch.distributed.run", "--standalone", $"--nproc_per_node={processes}", "--redirects", "1", "--tee", "1", script }.Concat(arguments))
            start.ArgumentList.Add(a);
        var limit = TimeSpan.FromMinutes(10);
        var exit = ChildProcess.Run(start, limit);
        Assert.True(exit.ExitCode == 0 && !exit.TimedOut, $"torchrun: {exit.Describe(limit)}:\n{exit.Output}\n{exit.Error}");
        return exit.Output;
    }

    /// <summary>Runs python3 on <paramref name="script"/>; a missing python3 or torch fails with the install to do.</summary>
    public static string RunPython(string folder, string script, params string[] arguments)
    {
        var setup = Setup.Value;
        var start = new ProcessStartInfo(Python) { WorkingDirectory = folder };
        start.ArgumentList.Add(script);
        foreach (var a in arguments) start.ArgumentList.Add(a);
        var limit = TimeSpan.FromMinutes(15);
        ChildExit exit;
        try
        {
            exit = ChildProcess.Run(start, limit);
        }
        catch (Win32Exception e)
        {
            throw new Xunit.Sdk.XunitException($"python3 could not be started ({e.Message}): the PyTorch twin tests need Debian's python3-torch and python3-numpy "
                                               + $"(apt-get install python3-torch python3-numpy; the tests try that themselves as root or with sudo: {setup ?? "not needed"}).");
        }
        if (exit.Error.Contains("No module named 'torch'", StringComparison.Ordinal) || exit.Error.Contains("No module named 'numpy'", StringComparison.Ordinal))
            throw new Xunit.Sdk.XunitException($"python3 has no torch or numpy: install Debian's python3-torch and python3-numpy (the tests tried: {setup ?? "not needed"}).\n" + exit.Error);
        Assert.True(exit.ExitCode == 0 && !exit.TimedOut, $"python3 {Path.GetFileName(script)}: {exit.Describe(limit)}:\n{exit.Output}\n{exit.Error}");
        return exit.Output;
    }
}
