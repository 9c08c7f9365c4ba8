using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using ResNetGen.Generator.Tests.Infrastructure;

namespace ResNetGen.Generator.Tests.Packaging;

/// <summary>The network <see cref="ExternalLibTorchTests"/>' program declares, declared here too: the same generator writes both.</summary>
[ResNet(Block.Basic, 1, 1, Stem = Stem.Cifar, BaseWidth = 8, NumClasses = 5, InputSize = 16)]
internal partial class ExternalTiny { }

/// <summary>
/// The third way to get libtorch (<c>-p:TorchBackend=external</c>): a program that references no libtorch package runs on
/// the libtorch <c>LD_LIBRARY_PATH</c> names, and without one stops at its first network with one line that names the
/// fix, copying nothing next to itself.
/// </summary>
public sealed class ExternalLibTorchTests : IDisposable
{
    private readonly ITestOutputHelper _log;
    private readonly DirectoryInfo _work = Directory.CreateTempSubdirectory("resnetgen-external-");

    public ExternalLibTorchTests(ITestOutputHelper log) => _log = log;

    public void Dispose()
    {
        try { _work.Delete(recursive: true); } catch (IOException) { }
    }

    private const string Attribute = "[ResNet(Block.Basic, 1, 1, Stem = Stem.Cifar, BaseWidth = 8, NumClasses = 5, InputSize = 16)]";

    /// <summary>Deterministic weights and input from a seed, the forward in eval mode, the logits' bits.</summary>
    internal static float[] Logits(torch.nn.Module<torch.Tensor, torch.Tensor> network)
    {
        network.eval();
        using var noGrad = torch.no_grad();
        // A generator of its own: tests running beside this one draw from libtorch's global one.
        using var generator = new torch.Generator(11);
        foreach (var (_, parameter) in network.named_parameters()) parameter.copy_(torch.randn(parameter.shape, generator: generator) * 0.2);
        using var input = torch.randn(new long[] { 2, 3, 16, 16 }, generator: generator);
        using var output = network.call(input);
        return output.data<float>().ToArray();
    }

    private string BuildApp()
    {
        var root = Repository.Root();
        var app = Path.Combine(_work.FullName, "app");
        Directory.CreateDirectory(app);
        File.WriteAllText(Path.Combine(app, "App.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <UsesTorchBackend>true</UsesTorchBackend>
                <TorchBackend>external</TorchBackend>
              </PropertyGroup>
              <Import Project="{root}/stack.props" />
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>$(AppTargetFramework)</TargetFramework>
              </PropertyGroup>
              <ItemGroup>
                <ProjectReference Include="{root}/Runtime/ResNetGen.Runtime.csproj" />
                <ProjectReference Include="{root}/Generator/ResNetGen.Generator.csproj" OutputItemType="Analyzer" ReferenceOutputAssembly="false" />
              </ItemGroup>
              <Import Project="{root}/Runtime/buildTransitive/ResNetGen.targets" />
            </Project>
            """);
        File.WriteAllText(Path.Combine(app, "Program.cs"), $$"""
            using System;
            using System.IO;
            using System.Linq;
            using ResNetGen;
            using TorchSharp;

            // The first call into ResNetGen or TorchSharp is the generated constructor.
            using var network = new ExternalTiny();
            network.eval();
            using var noGrad = torch.no_grad();
            using var generator = new torch.Generator(11);
            foreach (var (_, parameter) in network.named_parameters()) parameter.copy_(torch.randn(parameter.shape, generator: generator) * 0.2);
            using var input = torch.randn(new long[] { 2, 3, 16, 16 }, generator: generator);
            using var output = network.call(input);
            File.WriteAllBytes(args[0], output.data<float>().ToArray().SelectMany(BitConverter.GetBytes).ToArray());
            Console.WriteLine("libtorch " + LibTorch.Describe());

            {{Attribute}}
            partial class ExternalTiny { }
            """);
        // The referenced projects are the test's own build, already up to date: only the program is built.
        var result = Run(app, new Dictionary<string, string?>(), Dotnet(), "build", "-nologo", "-v", "q", "--no-dependencies", "-c", BuildConfiguration);
        Assert.True(result.Code == 0, "the program did not build:\n" + result.Output);
        var dll = Path.Combine(app, "bin", BuildConfiguration, "net10.0", "App.dll");
        Assert.True(File.Exists(dll), "no program at " + dll);
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(dll)!, "libtorch*"));
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(dll)!, "libc10*"));
        return dll;
    }

    private static string BuildConfiguration =>
#if DEBUG
        "Debug";
#else
        "Release";
#endif

    private static string LibTorchPackageFolder() =>
        Path.Combine(NativePatchTests.NuGetPackagesFolder(), "libtorch-cpu-linux-x64", "2.10.0", "runtimes", "linux-x64", "native");

    [Fact]
    public void A_program_without_a_libtorch_package_runs_on_the_folder_LD_LIBRARY_PATH_names_and_says_so_when_there_is_none()
    {
        if (!OperatingSystem.IsLinux()) return; // LD_LIBRARY_PATH is the Linux loader's
        var dll = BuildApp();
        var bin = Path.GetDirectoryName(dll)!;
        var before = Listing(bin);

        // On the libtorch-cpu package's folder: the same logits, bit for bit, as this process computes with the package.
        var logits = Path.Combine(_work.FullName, "logits.bin");
        var run = Run(bin, new Dictionary<string, string?> { ["LD_LIBRARY_PATH"] = LibTorchPackageFolder() }, Dotnet(), dll, logits);
        _log.WriteLine(run.Output);
        Assert.True(run.Code == 0, "the program failed on LD_LIBRARY_PATH's libtorch:\n" + run.Output);
        var theirs = File.ReadAllBytes(logits);
        using var here = new ExternalTiny();
        var ours = Logits(here).SelectMany(BitConverter.GetBytes).ToArray();
        Assert.Equal(2 * 5 * 4, ours.Length);
        Assert.Equal(ours, theirs);
        Assert.Contains("libtorch 2.10.0 CPU build, " + Path.Combine(LibTorchPackageFolder(), "libtorch_cpu.so") + " (LD_LIBRARY_PATH)", run.Output);

        // No libtorch anywhere (the NuGet cache, which TorchSharp's own fallback would copy from, is still there): one line.
        var missing = Run(bin, new Dictionary<string, string?> { ["LD_LIBRARY_PATH"] = null }, Dotnet(), dll, Path.Combine(_work.FullName, "none.bin"));
        _log.WriteLine(missing.Output);
        Assert.NotEqual(0, missing.Code);
        Assert.Contains("Unhandled exception. ResNetGen.LibTorchNotFoundException: " + LibTorch.MissingMessage + Environment.NewLine, missing.Output);
        Assert.Contains("The loader said: ", missing.Output);
        Assert.DoesNotContain("Trace from LoadNativeBackend", missing.Output); // TorchSharp's fallback never ran
        Assert.False(File.Exists(Path.Combine(_work.FullName, "none.bin")));
        Assert.Equal(before, Listing(bin)); // nothing copied next to the program
    }

    private static string[] Listing(string folder) =>
        Directory.GetFileSystemEntries(folder, "*", SearchOption.AllDirectories).Select(p => Path.GetRelativePath(folder, p)).OrderBy(p => p, StringComparer.Ordinal).ToArray();

    private static string Dotnet() => Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet";

    private static (int Code, string Output) Run(string directory, Dictionary<string, string?> environment, string file, params string[] arguments)
    {
        var start = new ProcessStartInfo(file)
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        // The test host's MSBuild settings must not leak into a separate build.
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase) || k.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase)).ToList())
            start.Environment.Remove(key);
        foreach (var (key, value) in environment)
        {
            if (value is null) start.Environment.Remove(key);
            else start.Environment[key] = value;
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', arguments)} ran past 5 minutes");
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }
}
