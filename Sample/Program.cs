using System;
using System.Threading;
using ResNetGen.Sample;
using Spectre.Console;

// libtorch's C++ warnings (NNPACK's "Unsupported hardware" on every convolution of some CPUs) would bury the output;
// TORCH_CPP_LOG_LEVEL, when set, is kept.
try
{
    ResNetGen.LibTorchLog.QuietUnlessSet();
}
catch (ResNetGen.LibTorchNotFoundException e)
{
    AnsiConsole.MarkupLine("[red]error:[/] " + Markup.Escape(e.Message));
    return 1;
}

// Ctrl+C once: stop after the current batch, keeping the last completed epoch's checkpoint. Twice: stop now.
using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    if (cancel.IsCancellationRequested) return;
    e.Cancel = true;
    cancel.Cancel();
};
// Written to a file or a pipe (a log, CI), lines and tables are not wrapped at 80 columns: a reader there sees whole
// names and messages. A terminal keeps its own width.
if (Console.IsOutputRedirected && Environment.GetEnvironmentVariable("COLUMNS") is null) AnsiConsole.Console.Profile.Width = 1000;
return new SampleApp(AnsiConsole.Console, cancel.Token).Run(args);
