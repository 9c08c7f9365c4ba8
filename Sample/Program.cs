using System;
using System.Threading;
using ResNetGen.Sample;
using Spectre.Console;

// Ctrl+C once: stop after the current batch, keeping the last completed epoch's checkpoint. Twice: stop now.
using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    if (cancel.IsCancellationRequested) return;
    e.Cancel = true;
    cancel.Cancel();
};
return new SampleApp(AnsiConsole.Console, cancel.Token).Run(args);
