using System;
using System.IO;
using Xunit;

namespace ResNetGen.Generator.Tests.Packaging;

/// <summary>What <see cref="LibTorch"/> says about the libtorch a process loaded, and how it reads the loader's words.</summary>
public class LibTorchTests
{
    [Fact]
    public void Describe_names_the_loaded_file_its_version_and_build()
    {
        var info = LibTorch.Describe();
        Assert.Equal("2.10.0", info.Version); // the libtorch-cpu-linux-x64 package the tests reference (stack.props)
        Assert.False(info.CudaBuild);
        Assert.Null(info.CudaVersion);
        if (!OperatingSystem.IsLinux()) return; // the path is read from /proc/self/maps
        Assert.NotNull(info.Path);
        Assert.Equal("libtorch_cpu.so", Path.GetFileName(info.Path));
        Assert.True(File.Exists(info.Path));
        Assert.StartsWith(Path.GetFullPath(AppContext.BaseDirectory), info.Path);
        Assert.Equal("the program's folder (a backend package)", info.Source);
        Assert.Empty(LibTorch.CudaDevices());
        Assert.Null(LibTorch.CuDnnVersion());
    }

    [Fact]
    public void Build_settings_are_read_by_key_and_never_by_a_suffix()
    {
        const string config = "PyTorch built with:\n  - GCC 13.3\n  - CUDA Runtime 13.0\n  - Build settings: BLAS_INFO=mkl, CUDA_VERSION=13.0, CUDNN_VERSION=9.13.0, " +
                              "CXX_COMPILER=/opt/rh/gcc/bin/c++, TORCH_VERSION=2.11.0, USE_CUDA=ON, USE_CUDNN=ON,\n";
        Assert.Equal("2.11.0", LibTorch.BuildSetting(config, "TORCH_VERSION"));
        Assert.Equal("13.0", LibTorch.BuildSetting(config, "CUDA_VERSION"));
        Assert.Equal("9.13.0", LibTorch.BuildSetting(config, "CUDNN_VERSION"));
        Assert.Equal("ON", LibTorch.BuildSetting(config, "USE_CUDA"));
        Assert.Null(LibTorch.BuildSetting(config, "VERSION")); // only whole keys: not the tail of TORCH_VERSION
        Assert.Null(LibTorch.BuildSetting("", "TORCH_VERSION"));
    }

    [Fact]
    public void The_loaders_words_are_condensed_to_what_is_missing_or_broken()
    {
        const string notFound = "Unable to load shared library 'libtorch_cpu' or one of its dependencies. In order to help diagnose loading problems, " +
                                "consider using a tool like strace.:  /app/runtimes/linux-x64/native/libtorch_cpu.so: cannot open shared object file: No such file or directory " +
                                "/app/libtorch_cpu.so: cannot open shared object file: No such file or directory ";
        Assert.Equal("libtorch_cpu: not found (in the program's folder, the runtime's, or on the loader's path)", LibTorch.Condensed("libtorch_cpu", notFound));
        const string dependency = "Unable to load shared library 'LibTorchSharp' or one of its dependencies.:  /app/LibTorchSharp.so: cannot open shared object file: " +
                                  "No such file or directory libtorch.so: cannot open shared object file: No such file or directory /app/libLibTorchSharp: cannot open shared object file: No such file or directory";
        Assert.Equal("LibTorchSharp needs libtorch.so (not found)", LibTorch.Condensed("LibTorchSharp", dependency));
        const string symbol = "Unable to load shared library 'LibTorchSharp' or one of its dependencies.:  /app/libLibTorchSharp.so: undefined symbol: _ZN2at4_ops3add4callEv " +
                              "/app/LibTorchSharp: cannot open shared object file: No such file or directory";
        Assert.Equal("LibTorchSharp needs libLibTorchSharp.so: undefined symbol: _ZN2at4_ops3add4callEv", LibTorch.Condensed("LibTorchSharp", symbol));
    }

    [Fact]
    public void The_missing_libtorch_message_names_both_fixes_in_its_first_line()
    {
        var error = new LibTorchNotFoundException(LibTorch.MissingMessage, new[] { "libtorch_cpu: not found" });
        var first = error.Message.Split(Environment.NewLine)[0];
        Assert.Equal(LibTorch.MissingMessage, first);
        Assert.Contains("libtorch-cpu-linux-x64", first);
        Assert.Contains("TorchSharp-cuda-linux", first);
        Assert.Contains("LD_LIBRARY_PATH", first);
        Assert.IsAssignableFrom<DllNotFoundException>(error); // what TorchSharp's users already catch
        Assert.Equal("The loader said: libtorch_cpu: not found", error.Message.Split(Environment.NewLine)[1]);
    }
}
