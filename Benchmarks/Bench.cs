using System;
using System.Collections.Generic;
using BenchmarkDotNet.Attributes;

namespace ResNetGen.Benchmarks;

/// <summary>The one benchmark: a case by name, set up once, run per invocation.</summary>
public class Bench
{
    public static IReadOnlyList<string> Selected { get; set; } = ResNetGen.Benchmarks.Case.Names;

    private Case? _case;

    public static IEnumerable<string> Cases() => Selected;

    [ParamsSource(nameof(Cases))]
    public string Case { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        _case = ResNetGen.Benchmarks.Case.Create(Case);
        _case.Run(); // first touch: allocator pools, kernel selection
    }

    [Benchmark]
    public void Run() => _case!.Run();

    [GlobalCleanup]
    public void Cleanup() => _case?.Dispose();
}
