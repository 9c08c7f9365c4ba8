namespace ResNetGen.CodeFixes;

/// <summary>The catalogue IDs the code fixes handle (the generator's DiagnosticDescriptors define them; tests check the two agree).</summary>
internal static class Ids
{
    public const string NotAPartialClass = "RNG0001";
    public const string BasicBlockWidth = "RNG0003";
    public const string BasicBlockDilation = "RNG0004";
    public const string DilateStagesLength = "RNG0005";
    public const string MemberAlreadyDeclared = "RNG0011";
    public const string UndefinedEnumValue = "RNG0012";
    public const string OptionDoesNotApply = "RNG0014";
}
