using System;
using System.Linq;

namespace ResNetGen;

/// <summary>
/// libtorch's own C++ log, which it writes to standard error: on CPUs NNPACK does not support, every convolution
/// layer's first use prints "Could not initialize NNPACK! Reason: Unsupported hardware." — harmless (libtorch uses its
/// other kernels) and loud. The level is libtorch's <c>TORCH_CPP_LOG_LEVEL</c> (INFO, WARNING — its default — ERROR or
/// FATAL); setting that variable before the program starts works as well as calling <see cref="SetLevel"/>.
/// </summary>
public static class LibTorchLog
{
    /// <summary>The environment variable libtorch reads its C++ log level from.</summary>
    public const string Variable = "TORCH_CPP_LOG_LEVEL";

    private static readonly string[] Levels = { "INFO", "WARNING", "ERROR", "FATAL" };

    /// <summary>
    /// Sets libtorch's C++ log level for this process, from now on (the native library is loaded if it was not).
    /// Returns false where this libtorch does not export the call (the variable still applies to child processes).
    /// </summary>
    /// <param name="level">INFO, WARNING, ERROR or FATAL: messages below it are not printed.</param>
    public static bool SetLevel(string level)
    {
        var upper = level.ToUpperInvariant();
        if (!Levels.Contains(upper))
            throw new ArgumentException($"'{level}' is not a libtorch log level; use INFO, WARNING, ERROR or FATAL.", nameof(level));
        LibTorch.EnsureLoadable(); // a missing libtorch is the one clear exception, not a type initializer's
        Environment.SetEnvironmentVariable(Variable, upper);
        return LibTorchNative.TrySetEnvironment(Variable, upper, overwrite: true) && LibTorchNative.InitLogging();
    }

    /// <summary>
    /// <see cref="SetLevel"/>(ERROR) unless <see cref="Variable"/> is already set, which is then applied as it is: what a
    /// console program calls first so that its own output is not buried under libtorch's warnings.
    /// </summary>
    /// <returns>The level in effect.</returns>
    /// <exception cref="LibTorchNotFoundException">No libtorch can be loaded.</exception>
    public static string QuietUnlessSet()
    {
        var own = Environment.GetEnvironmentVariable(Variable);
        if (own is null)
        {
            SetLevel("ERROR");
            return "ERROR";
        }
        LibTorch.EnsureLoadable();
        LibTorchNative.InitLogging();
        return own;
    }
}
