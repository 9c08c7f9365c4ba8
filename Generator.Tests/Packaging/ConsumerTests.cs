using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using Xunit;
using Xunit.Abstractions;
using ResNetGen.Generator.Tests.Infrastructure;

namespace ResNetGen.Generator.Tests.Packaging;

/// <summary>
/// The path a user takes, as the README writes it: pack the ResNetGen package into a folder, create a fresh project that
/// references it from there (and a libtorch backend from the registry), declare a network, build and run it, with an
/// empty NuGet package cache and HTTP cache of its own, so that everything comes from the feeds.
/// </summary>
public class ConsumerTests
{
    private readonly ITestOutputHelper _log;

    public ConsumerTests(ITestOutputHelper log) => _log = log;

    [Fact]
    public void A_fresh_project_builds_and_runs_a_network_from_the_packed_package()
    {
        var root = Repository.Root();
        var work = Directory.CreateTempSubdirectory("resnetgen-consumer-");
        // A version of its own, so that the NuGet cache never serves a package packed by an earlier run.
        var version = "0.1.0-test" + DateTime.UtcNow.ToString("yyyyMMddHHmmssfff");
        try
        {
            var feed = Path.Combine(work.FullName, "feed");
            Run(root, null, "pack", "Runtime/ResNetGen.Runtime.csproj", "-c", "Release", "-o", feed, $"-p:Version={version}", "-nologo");
            var package = Path.Combine(feed, $"ResNetGen.{version}.nupkg");
            Assert.True(File.Exists(package), "no package at " + package);
            using (var zip = System.IO.Compression.ZipFile.OpenRead(package))
            {
                var entries = zip.Entries.Select(e => e.FullName).ToList();
                Assert.Contains("lib/net8.0/ResNetGen.Runtime.dll", entries);
                Assert.Contains("analyzers/dotnet/cs/ResNetGen.Generator.dll", entries);
                Assert.Contains("analyzers/dotnet/cs/ResNetGen.CodeFixes.dll", entries);
                Assert.Contains("buildTransitive/ResNetGen.targets", entries);
                Assert.DoesNotContain(entries, e => e.StartsWith("lib/", StringComparison.Ordinal) && e.EndsWith("Generator.dll", StringComparison.Ordinal));
                var nuspec = new StreamReader(zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal)).Open()).ReadToEnd();
                Assert.Contains("id=\"TorchSharp\"", nuspec);
                Assert.Contains("id=\"SharpZipLib\"", nuspec); // pinned: the user's restore warns no NU1603
                Assert.DoesNotContain("id=\"libtorch", nuspec);
            }

            // The user's machine has never restored anything: a package cache and an HTTP cache of the app's own.
            var packages = Path.Combine(work.FullName, "nuget-packages");
            var fresh = new Dictionary<string, string>
            {
                ["NUGET_PACKAGES"] = packages,
                ["NUGET_HTTP_CACHE_PATH"] = Path.Combine(work.FullName, "nuget-http-cache"),
            };
            var app = Path.Combine(work.FullName, "app");
            Directory.CreateDirectory(app);
            File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <add key="resnetgen-local" value="{feed}" />
                  </packageSources>
                </configuration>
                """);
            File.WriteAllText(Path.Combine(app, "App.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <Nullable>enable</Nullable>
                    <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
                    <GenerateDocumentationFile>true</GenerateDocumentationFile>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="ResNetGen" Version="{version}" />
                    <PackageReference Include="libtorch-cpu-linux-x64" Version="2.10.0" />
                  </ItemGroup>
                </Project>
                """);
            File.WriteAllText(Path.Combine(app, "Program.cs"), """
                using System;
                using ResNetGen;
                using TorchSharp;

                using var network = new Tiny();
                network.eval();
                using var input = torch.randn(2, 3, 16, 16);
                using var noGrad = torch.no_grad();
                using var output = network.call(input);
                Console.WriteLine($"output [{string.Join(", ", output.shape)}]");
                Console.WriteLine($"parameters {Tiny.ParameterCount}");
                Console.WriteLine($"twin {(Bit.PyTorchSource.Contains("def build(num_classes=NUM_CLASSES):") ? "present" : "missing")}");
                // No ONNX Runtime native package in this project: the engine says what to add.
                try
                {
                    using var engine = network.ToOnnxRuntime();
                    Console.WriteLine("engine built");
                }
                catch (InvalidOperationException e)
                {
                    Console.WriteLine("engine: " + e.Message);
                }

                [ResNet(Block.Basic, 1, 1, Stem = Stem.Cifar, BaseWidth = 8, NumClasses = 3, InputSize = 16)]
                partial class Tiny { }

                /// <summary>A public network in a project that documents its public API: the generated files (the twin's too) add no warning.</summary>
                [ResNet(Block.PreActBottleneck, 1, 1, BaseWidth = 16, Stem = Stem.Fixed, Norm = Norm.GroupNorm, NormGroups = 8, WeightStandardization = true,
                    WeightStandardizationEps = 1e-8, NumClasses = 2, InputSize = 32)]
                public partial class Bit { }
                """);
            // RNG0009 (a stage gets a 1×1 map) is a warning, an error under TreatWarningsAsErrors: the build passes only if
            // the pragma reaches the generator's diagnostic.
            File.WriteAllText(Path.Combine(app, "Small.cs"), """
                using ResNetGen;

                #pragma warning disable RNG0009 // a deliberately small ImageNet-stem network
                [ResNet(Block.Basic, 1, 1, 1, 1, BaseWidth = 8, NumClasses = 2, InputSize = 16)]
                partial class Small { }
                """);
            Run(app, fresh, "build", "-nologo", "-v", "q");
            Assert.True(Directory.Exists(Path.Combine(packages, "resnetgen", version)), "the package did not come from the local feed into the empty cache");
            Assert.True(Directory.Exists(Path.Combine(packages, "sharpziplib", "1.4.1")), "SharpZipLib is not the pinned 1.4.1");
            var output = Run(app, fresh, "run", "--no-build");
            Assert.Contains("output [2, 3]", output);
            Assert.Contains("twin present", output);
            Assert.Contains("engine: ONNX Runtime's native library is not in this application", output);
            Assert.Contains("<PackageReference Include=\"Microsoft.ML.OnnxRuntime\" Version=\"1.31.1\" />", output);
            // conv1 216 + bn1 16; layer1.0 576+16+576+16; layer2.0 1,152+32+2,304+32 plus its projection 128+32; fc 51.
            Assert.Contains("parameters " + (216 + 16 + 576 + 16 + 576 + 16 + 1152 + 32 + 2304 + 32 + 128 + 32 + 51), output);

            // The package's code fixes, as an IDE loads them from it: RNG0001 from the packed generator, fixed by the packed fix.
            var fixedSource = PackedFix(Path.Combine(packages, "resnetgen", version, "analyzers", "dotnet", "cs"),
                "using ResNetGen;\n\n[ResNet(Block.Basic, 2, 2, 2, 2)]\npublic class Net { }\n");
            Assert.Equal("using ResNetGen;\n\n[ResNet(Block.Basic, 2, 2, 2, 2)]\npublic partial class Net { }\n", fixedSource);

            var native = Directory.GetFiles(Path.Combine(app, "bin"), "libLibTorchSharp.so", SearchOption.AllDirectories).Single();
            if (!ElfVersionNeeds.HostLibStdCxxHas("GLIBCXX_3.4.32")) Assert.Equal(2, NativePatchTests.FlagsOf(native) & 2);
            Assert.Equal(0, NativePatchTests.FlagsOf(NativePatchTests.CacheCopy(packages)) & 2);
        }
        finally
        {
            try { work.Delete(recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>
    /// Loads the generator and the code fixes from <paramref name="folder"/> (a restored package's analyzers folder) in an
    /// assembly load context of their own, runs the generator on <paramref name="source"/> in a workspace, applies the
    /// first fix offered for its RNG0001, and returns the fixed text.
    /// </summary>
    private static string PackedFix(string folder, string source)
    {
        var context = new System.Runtime.Loader.AssemblyLoadContext("packed-analyzers", isCollectible: true);
        try
        {
            var generator = (Microsoft.CodeAnalysis.IIncrementalGenerator)Activator.CreateInstance(
                context.LoadFromAssemblyPath(Path.Combine(folder, "ResNetGen.Generator.dll")).GetType("ResNetGen.Generator.ResNetGenerator", throwOnError: true)!)!;
            var fix = (Microsoft.CodeAnalysis.CodeFixes.CodeFixProvider)Activator.CreateInstance(
                context.LoadFromAssemblyPath(Path.Combine(folder, "ResNetGen.CodeFixes.dll")).GetType("ResNetGen.CodeFixes.PartialFix", throwOnError: true)!)!;
            using var workspace = new Microsoft.CodeAnalysis.AdhocWorkspace();
            var project = workspace.AddProject("User", Microsoft.CodeAnalysis.LanguageNames.CSharp)
                .WithMetadataReferences(Basic.Reference.Assemblies.Net100.References.All.Append(
                    Microsoft.CodeAnalysis.MetadataReference.CreateFromFile(typeof(ResNetAttribute).Assembly.Location)));
            var document = project.AddDocument("Net.cs", source);
            var compilation = document.Project.GetCompilationAsync().GetAwaiter().GetResult()!;
            Microsoft.CodeAnalysis.CSharp.CSharpGeneratorDriver.Create(generator).RunGeneratorsAndUpdateCompilation(compilation, out _, out var diagnostics);
            var diagnostic = diagnostics.Single(d => d.Id == "RNG0001");
            var actions = new List<Microsoft.CodeAnalysis.CodeActions.CodeAction>();
            fix.RegisterCodeFixesAsync(new Microsoft.CodeAnalysis.CodeFixes.CodeFixContext(document, diagnostic, (a, _) => actions.Add(a), default)).GetAwaiter().GetResult();
            var change = actions.First().GetOperationsAsync(default).GetAwaiter().GetResult()
                .OfType<Microsoft.CodeAnalysis.CodeActions.ApplyChangesOperation>().Single();
            return change.ChangedSolution.GetDocument(document.Id)!.GetTextAsync().GetAwaiter().GetResult().ToString();
        }
        finally
        {
            context.Unload();
        }
    }

    private string Run(string directory, Dictionary<string, string>? environment, params string[] arguments)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        // The test host's MSBuild settings must not leak into a separate build.
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase) || k.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            start.Environment.Remove(key);
        }
        foreach (var (key, value) in environment ?? new()) start.Environment[key] = value;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(10)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"dotnet {string.Join(" ", arguments)} took over 10 minutes");
        }
        var text = stdout.Result + stderr.Result;
        _log.WriteLine($"$ dotnet {string.Join(" ", arguments)}\n{text}");
        Assert.True(process.ExitCode == 0, $"dotnet {string.Join(" ", arguments)} exited {process.ExitCode}:\n{text}");
        return text;
    }
}
