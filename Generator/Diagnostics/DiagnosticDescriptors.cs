using System.Collections.Generic;
using Microsoft.CodeAnalysis;

namespace ResNetGen.Generator.Diagnostics;

/// <summary>The ResNetGen diagnostics catalogue (RNG0001…). Every message states the fix.</summary>
internal static class DiagnosticDescriptors
{
    private const string Category = "ResNetGen";

    /// <summary>
    /// Where each diagnostic's page lives: the repository's <c>docs/diagnostics/</c> folder, one page per ID
    /// (<c>RNG0003.md</c>). Chosen once; every descriptor's help link is this plus the ID and <c>.md</c>.
    /// </summary>
    public const string HelpLinkBase = "https://github.com/resnetgen/ResNetGen/blob/main/docs/diagnostics/";

    /// <summary>The help page of diagnostic <paramref name="id"/>.</summary>
    public static string HelpLink(string id) => HelpLinkBase + id + ".md";

    public static readonly DiagnosticDescriptor NotAPartialClass = Error(
        "RNG0001", "[ResNet] needs a non-generic partial class",
        "[ResNet] cannot generate '{0}': {1}. {2}");

    public static readonly DiagnosticDescriptor NoStages = Error(
        "RNG0002", "A network needs at least one stage of at least one block",
        "{0}. Give one block count per stage, each at least 1, e.g. [ResNet(Block.Basic, 2, 2, 2, 2)].");

    public static readonly DiagnosticDescriptor BasicBlockWidth = Error(
        "RNG0003", "Block.Basic supports only Groups = 1 and WidthPerGroup = 64",
        "Block.Basic supports only Groups = 1 and WidthPerGroup = 64, but {0} = {1}. Remove {0}, or use Block.Bottleneck for ResNeXt or Wide ResNet.");

    public static readonly DiagnosticDescriptor BasicBlockDilation = Error(
        "RNG0004", "Dilation is not supported with Block.Basic",
        "DilateStages asks to dilate {0}, but Block.Basic does not support dilation (as in torchvision). Use Block.Bottleneck, or set every DilateStages entry to false.");

    public static readonly DiagnosticDescriptor DilateStagesLength = Error(
        "RNG0005", "DilateStages needs one entry per stage after the first",
        "DilateStages has {0} entries, but a network of {1} stages needs {2} (one for each stage after the first). Give {2} values.");

    public static readonly DiagnosticDescriptor NonPositiveSize = Error(
        "RNG0006", "A size must be positive",
        "{0}. {1}");

    public static readonly DiagnosticDescriptor FeatureMapVanishes = Error(
        "RNG0007", "A feature map shrinks to nothing",
        "At input size {0}×{0}, {1} would output {2}: its height or width reaches 0. Use a larger InputSize, fewer stages, or Stem.Cifar.");

    public static readonly DiagnosticDescriptor ShortcutShapeMismatch = Error(
        "RNG0008", "A block's shortcut and residual branch disagree in shape",
        "At input size {0}×{0}, block {1} adds a residual branch of shape {2} to a shortcut of shape {3}: {4}. {5}");

    public static readonly DiagnosticDescriptor NoSpatialContext = Warning(
        "RNG0009", "A stage receives a 1×1 feature map",
        "At input size {0}×{0}, {1} receives a 1×1 feature map, so its stride or dilation no longer sees any spatial context. Use Stem.Cifar or a larger InputSize.");

    public static readonly DiagnosticDescriptor WrongInputShape = Error(
        "RNG0010", "A generated network is called on a tensor of the wrong shape",
        "{0}.forward expects a tensor of shape [N, {1}, H, W], but this argument has shape {2}: {3}. {4}");

    public static readonly DiagnosticDescriptor MemberAlreadyDeclared = Error(
        "RNG0011", "The class declares a member the generator owns",
        "'{0}' already declares {1}, which ResNetGen generates. Remove it (or rename it): " + Model.GeneratedMembers.Sentence + ".");

    public static readonly DiagnosticDescriptor UndefinedEnumValue = Error(
        "RNG0012", "An enum argument is not one of its members",
        "{0} is {1}, which is not a member of {2}. Use one of: {3}.");

    public static readonly DiagnosticDescriptor TooManyChannels = Error(
        "RNG0013", "The network grows past 2^20 channels",
        "{0} stages starting at BaseWidth {1} reach {2} channels in the last stage, past the 2^20 a network can hold. Use fewer stages or a smaller BaseWidth.");

    public static readonly DiagnosticDescriptor OptionDoesNotApply = Error(
        "RNG0014", "An option does not apply to this network",
        "{0} has no effect {1}. {2}");

    public static readonly DiagnosticDescriptor OptionOutOfRange = Error(
        "RNG0015", "An option's value is outside its range",
        "{0} is {1}, outside {2}. {3}");

    public static readonly DiagnosticDescriptor TooSmallToBlur = Error(
        "RNG0016", "A blur pool receives a map too small to pad",
        "At input size {0}×{0}, {1} receives {2}: the blur pool's reflect padding needs a height and width of at least 2. Use a larger InputSize, or AntiAlias.AvgPool.");

    public static readonly DiagnosticDescriptor NormGroupsDoNotDivide = Error(
        "RNG0017", "NormGroups does not divide a layer's channels",
        "{0} normalises {1} channels, which NormGroups = {2} does not divide: group-norm needs whole groups. {3}");

    public static readonly DiagnosticDescriptor InternalError = Error(
        "RNG0099", "ResNetGen failed unexpectedly",
        "ResNetGen could not generate '{0}': {1}. This is a bug in ResNetGen; please report it with the attribute you used.");

    public static IEnumerable<DiagnosticDescriptor> All => new[]
    {
        NotAPartialClass, NoStages, BasicBlockWidth, BasicBlockDilation, DilateStagesLength, NonPositiveSize,
        FeatureMapVanishes, ShortcutShapeMismatch, NoSpatialContext, WrongInputShape, MemberAlreadyDeclared, UndefinedEnumValue, TooManyChannels,
        OptionDoesNotApply, OptionOutOfRange, TooSmallToBlur, NormGroupsDoNotDivide, InternalError,
    };

    /// <summary>The descriptor of a catalogue ID; an ID outside the catalogue is a bug, and fails loudly.</summary>
    public static DiagnosticDescriptor ById(string id)
    {
        foreach (var descriptor in All)
        {
            if (descriptor.Id == id) return descriptor;
        }
        throw new System.ArgumentOutOfRangeException(nameof(id), id, "not a ResNetGen diagnostic ID");
    }

    /// <summary>Whether the catalogue's diagnostic <paramref name="id"/> is an error (one that stops generation).</summary>
    public static bool IsError(string id) => ById(id).DefaultSeverity == DiagnosticSeverity.Error;

    /// <summary>The diagnostic of a shape problem the planner found.</summary>
    public static DiagnosticDescriptor For(Planning.ShapeProblem problem) => problem switch
    {
        Planning.ShapeProblem.VanishingFeatureMap => FeatureMapVanishes,
        Planning.ShapeProblem.ShortcutMismatch => ShortcutShapeMismatch,
        Planning.ShapeProblem.NoSpatialContext => NoSpatialContext,
        Planning.ShapeProblem.TooSmallToBlur => TooSmallToBlur,
        Planning.ShapeProblem.NormGroupsDoNotDivide => NormGroupsDoNotDivide,
        _ => throw new System.ArgumentOutOfRangeException(nameof(problem), problem, "a shape problem without a diagnostic"),
    };

    private static DiagnosticDescriptor Error(string id, string title, string message) =>
        new(id, title, message, Category, DiagnosticSeverity.Error, isEnabledByDefault: true,
            description: title + ". The message names the value at fault and the fix.", helpLinkUri: HelpLink(id), customTags: WellKnownDiagnosticTags.NotConfigurable);

    private static DiagnosticDescriptor Warning(string id, string title, string message) =>
        new(id, title, message, Category, DiagnosticSeverity.Warning, isEnabledByDefault: true,
            description: title + ". The message names the stage and the fix.", helpLinkUri: HelpLink(id));
}
