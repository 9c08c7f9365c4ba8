using System;

namespace ResNetGen.Sample;

/// <summary>A problem with the user's input: printed as one line, with what to do, and exit code 1.</summary>
public sealed class SampleException : Exception
{
    public SampleException(string message) : base(message) { }
}
