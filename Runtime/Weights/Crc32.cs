using System;
using System.IO;

namespace ResNetGen;

/// <summary>
/// A read-only stream that passes another's bytes on and keeps their CRC-32 (the zip format's, which every entry of a
/// torch.save archive carries and PyTorch's own reader checks: without it a damaged local header or a changed data byte
/// loads silently) and count. The CRC is System.IO.Hashing's vectorised one, so checking costs little beside the read.
/// </summary>
internal sealed class Crc32Stream : Stream
{
    private readonly Stream _inner;
    private readonly System.IO.Hashing.Crc32 _crc = new();

    public Crc32Stream(Stream inner) => _inner = inner;

    /// <summary>The CRC-32 of the bytes read so far.</summary>
    public uint Crc => _crc.GetCurrentHashAsUInt32();

    /// <summary>How many bytes have been read.</summary>
    public long Count { get; private set; }

    /// <summary>The CRC-32 of <paramref name="data"/>.</summary>
    public static uint Of(ReadOnlySpan<byte> data) => System.IO.Hashing.Crc32.HashToUInt32(data);

    public override int Read(Span<byte> buffer)
    {
        var n = _inner.Read(buffer);
        if (n <= 0) return n;
        _crc.Append(buffer.Slice(0, n));
        Count += n;
        return n;
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException("a checksummed stream has no length");
    public override long Position
    {
        get => Count;
        set => throw new NotSupportedException("a checksummed stream cannot seek");
    }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException("a checksummed stream cannot seek");
    public override void SetLength(long value) => throw new NotSupportedException("a checksummed stream is read-only");
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("a checksummed stream is read-only");

    protected override void Dispose(bool disposing)
    {
        if (disposing) _inner.Dispose();
        base.Dispose(disposing);
    }
}
