using System;
using System.Text;

namespace ResNetGen.Generator.Emitting;

/// <summary>A small indenting writer: four spaces a level, '\n' line endings on every platform.</summary>
internal sealed class SourceWriter
{
    private readonly StringBuilder _text = new();
    private int _indent;

    /// <summary>The columns the current indentation takes.</summary>
    public int Indent => _indent * 4;

    public void Line(string line = "")
    {
        if (line.Length > 0) _text.Append(' ', _indent * 4).Append(line);
        _text.Append('\n');
    }

    public void Open(string line)
    {
        Line(line);
        Line("{");
        _indent++;
    }

    /// <summary>Indents one more level, after a brace written by hand.</summary>
    public void Indented() => _indent++;

    public void Close(string suffix = "")
    {
        _indent--;
        Line("}" + suffix);
    }

    public IDisposable Block(string line)
    {
        Open(line);
        return new Closer(this);
    }

    public override string ToString() => _text.ToString();

    private sealed class Closer : IDisposable
    {
        private readonly SourceWriter _writer;
        public Closer(SourceWriter writer) => _writer = writer;
        public void Dispose() => _writer.Close();
    }
}
