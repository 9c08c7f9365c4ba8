using System;
using System.Runtime.InteropServices;
using TorchSharp;

namespace ResNetGen;

/// <summary>
/// libtorch entry points that TorchSharp does not wrap, found by their (Itanium C++) names in the libtorch_cpu
/// library TorchSharp has loaded, and libc's setenv. Where a name is not exported (another platform or libtorch
/// build) the callers fall back as each method says.
/// </summary>
internal static unsafe class LibTorchNative
{
    private static readonly IntPtr TorchCpu = LoadTorchCpu();
    private static readonly delegate* unmanaged<IntPtr> GlobalContext =
        (delegate* unmanaged<IntPtr>)Export("_ZN2at13globalContextEv");
    private static readonly delegate* unmanaged<IntPtr, byte> GetMkldnn =
        (delegate* unmanaged<IntPtr, byte>)Export("_ZNK2at7Context17userEnabledMkldnnEv");
    private static readonly delegate* unmanaged<IntPtr, byte, void> SetMkldnn =
        (delegate* unmanaged<IntPtr, byte, void>)Export("_ZN2at7Context20setUserEnabledMkldnnEb");
    private static readonly delegate* unmanaged<IntPtr, long> TensorVersion =
        (delegate* unmanaged<IntPtr, long>)Export("_ZN2at4_ops8_version4callERKNS_6TensorE");

    /// <summary>at::globalContext().userEnabledMkldnn(); libtorch's default (true) where the call is not exported.</summary>
    public static bool UserEnabledMkldnn()
    {
        if (GetMkldnn == null || GlobalContext == null) return true;
        return GetMkldnn(GlobalContext()) != 0;
    }

    /// <summary>at::globalContext().setUserEnabledMkldnn(enabled): read by every later convolution.</summary>
    /// <exception cref="PlatformNotSupportedException">This libtorch does not export the call.</exception>
    public static void SetUserEnabledMkldnn(bool enabled)
    {
        if (SetMkldnn == null || GlobalContext == null)
            throw new PlatformNotSupportedException("This libtorch build does not export at::Context::setUserEnabledMkldnn, so ResNetGen cannot switch oneDNN.");
        SetMkldnn(GlobalContext(), enabled ? (byte)1 : (byte)0);
    }

    /// <summary>
    /// The tensor's version counter (PyTorch's <c>tensor._version</c>), which every in-place change raises, or -1 where the
    /// call is not exported.
    /// </summary>
    public static long Version(torch.Tensor tensor) => TensorVersion == null ? -1 : TensorVersion(tensor.Handle);

    /// <summary>
    /// at::get_mkldnn_version(), e.g. "oneDNN v3.7.1 (commit …)", or null where it cannot be called safely (see <see cref="ReadString"/>).
    /// </summary>
    public static string? OneDnnVersion() => ReadString("_ZN2at18get_mkldnn_versionB5cxx11Ev", 4096);

    /// <summary>
    /// at::show_config(): how libtorch was built ("PyTorch built with: …", its "Build settings: …, TORCH_VERSION=2.10.0,
    /// USE_CUDA=…" line), or null where it cannot be called safely.
    /// </summary>
    public static string? ShowConfig() => ReadString("_ZN2at11show_configB5cxx11Ev", 1 << 20);

    /// <summary>
    /// Calls a libtorch function that takes nothing and returns a C++ std::string, read in the x86-64 System V layout
    /// (hidden result pointer; data pointer, then length), so only on Linux x64; null elsewhere or where the name is not
    /// exported. The string's heap buffer, if any, is left to the process (one small string per call).
    /// </summary>
    private static string? ReadString(string export, int maxLength)
    {
        if (RuntimeInformation.ProcessArchitecture != Architecture.X64 || !RuntimeInformation.IsOSPlatform(OSPlatform.Linux)) return null;
        var function = (delegate* unmanaged<IntPtr, IntPtr>)Export(export);
        if (function == null) return null;
        var result = Marshal.AllocHGlobal(64);
        try
        {
            function(result);
            var data = Marshal.ReadIntPtr(result);
            var length = Marshal.ReadInt64(result, IntPtr.Size);
            return length > 0 && length < maxLength ? Marshal.PtrToStringUTF8(data, (int)length) : null;
        }
        finally
        {
            Marshal.FreeHGlobal(result);
        }
    }

    /// <summary>
    /// at::globalContext().setBenchmarkCuDNN(enabled): whether cuDNN times its algorithms for each new convolution shape
    /// and keeps the fastest (PyTorch's <c>torch.backends.cudnn.benchmark</c>); false where the call is not exported.
    /// </summary>
    public static bool TrySetBenchmarkCuDnn(bool enabled)
    {
        var function = (delegate* unmanaged<IntPtr, byte, void>)Export("_ZN2at7Context17setBenchmarkCuDNNEb");
        if (function == null || GlobalContext == null) return false;
        function(GlobalContext(), enabled ? (byte)1 : (byte)0);
        return true;
    }

    /// <summary>c10::initLogging(): applies TORCH_CPP_LOG_LEVEL from the native environment; false where it is not exported.</summary>
    public static bool InitLogging()
    {
        var function = (delegate* unmanaged<void>)Export("_ZN3c1011initLoggingEv");
        if (function == null) return false;
        function();
        return true;
    }

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);

    /// <summary>Sets a variable in the native environment, which .NET's own copy does not reach on Unix (an existing value is kept unless <paramref name="overwrite"/>).</summary>
    public static bool TrySetEnvironment(string name, string value, bool overwrite = false)
    {
        if (RuntimeInformation.IsOSPlatform(OSPlatform.Windows)) return false;
        try
        {
            return SetEnv(name, value, overwrite ? 1 : 0) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    private static IntPtr LoadTorchCpu()
    {
        torch.InitializeDeviceType(DeviceType.CPU);
        foreach (var name in new[] { "libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll" })
        {
            if (NativeLibrary.TryLoad(name, out var handle)) return handle;
        }
        return IntPtr.Zero;
    }

    private static IntPtr Export(string name) =>
        TorchCpu != IntPtr.Zero && NativeLibrary.TryGetExport(TorchCpu, name, out var address) ? address : IntPtr.Zero;
}
