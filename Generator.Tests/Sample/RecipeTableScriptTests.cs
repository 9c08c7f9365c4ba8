using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using ResNetGen.Generator.Tests.Infrastructure;
using Xunit;

namespace ResNetGen.Generator.Tests.SampleApplication;

/// <summary>
/// <c>Sample/recipe-table.sh</c>, the runner behind the README's recipe tables: its table read from <c>train</c> logs
/// (checkpoint accuracy, the EMA's checkpoint line, mean, difference from the first row, median seconds per epoch
/// without epoch 1) and its refusals, which run nothing and create nothing.
/// </summary>
public sealed class RecipeTableScriptTests : IDisposable
{
    private readonly DirectoryInfo _work = Directory.CreateTempSubdirectory("recipe-table-");

    public void Dispose() => _work.Delete(recursive: true);

    private static string EpochRow(int epoch, double seconds) =>
        $"│ {epoch,-5} │ 0.300      │ 90.00%    │ 0.300     │ 90.00%   │ {seconds:0.0} s │ 1000     │";

    private void WriteLog(string run, double[] seconds, string checkpoint, string precision = "bf16")
    {
        var folder = Directory.CreateDirectory(Path.Combine(_work.FullName, "out", run));
        var lines = new[] { $"Precision: {precision}, whatever it means", "Recipe: whatever", "│ epoch │ train loss │ train acc │ test loss │ test acc │ time   │ images/s │" }
            .Concat(seconds.Select((s, i) => EpochRow(i + 1, s)))
            .Append(checkpoint + ": out/fashion-resnet20.safetensors");
        File.WriteAllLines(Path.Combine(folder.FullName, "train.log"), lines);
        File.WriteAllText(Path.Combine(folder.FullName, "done"), "");
    }

    private void WriteRunInfo(string run, string machine, string oneDnn) =>
        File.WriteAllLines(Path.Combine(_work.FullName, "out", run, "run.txt"), new[]
        {
            "command: train --whatever", "started: 2026-12-07T00:00:00Z", "commit: 0000000", $"machine: {machine}", $"oneDNN: {oneDnn}",
        });

    private (int Code, string Output, string Error) Run(params string[] arguments) => Run(null, arguments);

    private (int Code, string Output, string Error) Run(Action<ProcessStartInfo>? prepare, params string[] arguments)
    {
        var start = new ProcessStartInfo("bash") { WorkingDirectory = _work.FullName };
        prepare?.Invoke(start);
        start.ArgumentList.Add(Path.Combine(Repository.Root(), "Sample", "recipe-table.sh"));
        foreach (var a in arguments) start.ArgumentList.Add(a);
        var exit = ChildProcess.Run(start, TimeSpan.FromSeconds(60));
        Assert.False(exit.TimedOut, "recipe-table.sh did not finish in 60 s");
        return (exit.ExitCode, exit.Output, exit.Error);
    }

    [Fact]
    public void Summary_reads_each_runs_checkpoint_and_epoch_times()
    {
        File.WriteAllLines(Path.Combine(_work.FullName, "rows.txt"), new[]
        {
            "# baseline first",
            "base|",
            "avg|--ema 0.999",
            "",
            "half|--clip-grad 1",
        });
        WriteLog("base-e3-s1", new[] { 90.0, 10.0, 12.0 }, "Checkpoint (epoch 3, test accuracy 93.20%)");
        WriteLog("base-e3-s2", new[] { 95.0, 14.0, 16.0 }, "Checkpoint (epoch 3, test accuracy 93.40%)");
        WriteLog("avg-e3-s1", new[] { 80.0, 20.0, 21.0 },
            "Checkpoint (epoch 3, the weights' moving average: test accuracy 93.61%; the trained weights scored 93.00%)");
        WriteLog("avg-e3-s2", new[] { 80.0, 22.0, 23.0 },
            "Checkpoint (epoch 3, the weights' moving average: test accuracy 93.55%; the trained weights scored 93.10%)");
        WriteLog("half-e3-s1", new[] { 70.0, 30.0, 31.0 }, "Checkpoint (epoch 3, test accuracy 92.90%)", "fp32"); // seed 2 never ran
        WriteLog("other-e3-s1", new[] { 70.0, 30.0, 31.0 }, "Checkpoint (epoch 3, test accuracy 99.00%)", "fp16"); // not a row: not counted
        // Where three of the runs ran (older runs have no run.txt and are not counted there).
        WriteRunInfo("base-e3-s1", "Zen (family 25, model 17, AVX-512)", "ResNetGen's defaults");
        WriteRunInfo("base-e3-s2", "Zen (family 26, model 2, AVX-512)", "ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 RESNETGEN_ONEDNN=on");
        WriteRunInfo("avg-e3-s1", "Zen (family 25, model 17, AVX-512)", "ResNetGen's defaults");
        WriteRunInfo("other-e3-s1", "Other (family 6, model 1)", "RESNETGEN_ONEDNN=off"); // not a row: not counted

        var (code, output, error) = Run("--summary", "--epochs", "3", "--rows", "rows.txt", "--out", "out");

        Assert.True(code == 0, error);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(new[]
        {
            "| options | seed 1 | seed 2 | mean | vs base | s/epoch |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            "| (the original recipe) | 93.20% | 93.40% | 93.30% |  | 13.0 |",
            "| `--ema 0.999` | 93.61% | 93.55% | 93.58% | +0.28 | 21.5 |",
            "| `--clip-grad 1` | 92.90% |  | 92.90% | -0.40 | 30.5 |",
            "Precision: bf16 (4 runs), fp32 (1 run)",
            "Machine: Zen (family 25, model 17, AVX-512) (2 runs); Zen (family 26, model 2, AVX-512) (1 run)",
            "oneDNN: ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 RESNETGEN_ONEDNN=on (1 run); ResNetGen's defaults (2 runs)",
        }, lines);
        Assert.Equal(output, File.ReadAllText(Path.Combine(_work.FullName, "out", "table-e3.md")));
    }

    [Fact]
    public void Each_run_records_its_command_machine_and_onednn_settings_and_a_finished_run_is_not_run_again()
    {
        // A stand-in for dotnet on the PATH: "build" succeeds, "train" writes a log with a checkpoint line, or fails
        // when the row asks for it, and counts its calls.
        var bin = Directory.CreateDirectory(Path.Combine(_work.FullName, "bin"));
        var fake = Path.Combine(bin.FullName, "dotnet");
        File.WriteAllText(fake, """
            #!/bin/bash
            [ "$1" = build ] && exit 0
            echo "$*" >> "$CALLS"
            case " $* " in *" --fail "*) echo "train: refused"; exit 3 ;; esac
            echo "Precision: bf16, whatever it means"
            echo "Checkpoint (epoch 2, test accuracy 91.25%): out/fashion-resnet20.safetensors"
            """.Replace("\r", ""));
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(fake, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.WriteAllText(Path.Combine(_work.FullName, "rows.txt"), "base|\nbad|--fail\n");
        var calls = Path.Combine(_work.FullName, "calls.txt");
        void Prepare(ProcessStartInfo start)
        {
            start.Environment["PATH"] = bin.FullName + ":" + Environment.GetEnvironmentVariable("PATH");
            start.Environment["CALLS"] = calls;
            start.Environment["ONEDNN_MAX_CPU_ISA"] = "AVX2";
            start.Environment.Remove("RESNETGEN_ONEDNN");
        }

        var (code, output, error) = Run(Prepare, "--epochs", "2", "--seeds", "7", "--rows", "rows.txt", "--out", "out", "--", "--limit", "600");

        Assert.True(code == 0, error);
        var info = File.ReadAllLines(Path.Combine(_work.FullName, "out", "base-e2-s7", "run.txt"));
        Assert.Equal("command: train --epochs 2 --precision auto --seed 7 --output out/base-e2-s7 --limit 600", info[0]);
        Assert.Matches(@"^started: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", info[1]);
        Assert.Matches(@"^commit: [0-9a-f]{7,}$", info[2]);
        Assert.Matches(@"^machine: .+ \(family \d+, model \d+.*\)$", info[3]);
        Assert.Equal("oneDNN: ONEDNN_MAX_CPU_ISA=AVX2", info[4]);
        Assert.True(File.Exists(Path.Combine(_work.FullName, "out", "base-e2-s7", "done")));
        Assert.False(File.Exists(Path.Combine(_work.FullName, "out", "bad-e2-s7", "done")), "a failed run was marked done");
        Assert.Contains("out/bad-e2-s7 failed (exit 3)", error);
        Assert.Contains("| (the original recipe) | 91.25% | 91.25% |", output);
        Assert.Contains("oneDNN: ONEDNN_MAX_CPU_ISA=AVX2 (2 runs)", output);
        Assert.Equal(2, File.ReadAllLines(calls).Length);

        (code, output, error) = Run(Prepare, "--epochs", "2", "--seeds", "7", "--rows", "rows.txt", "--out", "out");

        Assert.True(code == 0, error);
        Assert.Contains("out/base-e2-s7: done before, kept", output);
        var again = File.ReadAllLines(calls);
        Assert.Equal(3, again.Length); // only the failed run ran again
        Assert.Contains("--fail", again[2]);
    }

    [Theory]
    [InlineData("--epochs", "0", "--epochs takes a whole number")]
    [InlineData("--seeds", "1 x", "a seed is a whole number, not 'x'")]
    [InlineData("--precision", "fp8", "--precision is auto, fp32, bf16 or fp16, not 'fp8'")]
    [InlineData("--seeds", " ", "--seeds names at least one seed")]
    [InlineData("--rows", "missing.txt", "no rows file 'missing.txt'")]
    [InlineData("--bogus", "1", "unknown option '--bogus'")]
    public void Bad_arguments_are_refused_before_anything_runs(string option, string value, string message)
    {
        var (code, _, error) = Run(option, value, "--out", "out");

        Assert.Equal(2, code);
        Assert.Contains(message, error);
        Assert.False(Directory.Exists(Path.Combine(_work.FullName, "out")), "a refused call created its output folder");
    }

    [Fact]
    public void A_row_name_that_is_not_a_folder_name_is_refused()
    {
        File.WriteAllText(Path.Combine(_work.FullName, "rows.txt"), "../escape|--clip-grad 1\n");

        var (code, _, error) = Run("--rows", "rows.txt", "--out", "out");

        Assert.Equal(2, code);
        Assert.Contains("row name '../escape'", error);
        Assert.False(Directory.Exists(Path.Combine(_work.FullName, "out")));
    }

    [Fact]
    public void Help_names_every_option()
    {
        var (code, output, _) = Run("--help");

        Assert.Equal(0, code);
        foreach (var option in new[] { "--epochs", "--seeds", "--precision", "--rows", "--out", "--summary" }) Assert.Contains(option, output);
    }
}
