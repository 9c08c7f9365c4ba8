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

    private (int Code, string Output, string Error) Run(params string[] arguments)
    {
        var start = new ProcessStartInfo("bash") { WorkingDirectory = _work.FullName };
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
        }, lines);
        Assert.Equal(output, File.ReadAllText(Path.Combine(_work.FullName, "out", "table-e3.md")));
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
