using System;
using System.IO;

namespace ResNetGen;

/// <summary>
/// The zip format's CRC-32 (polynomial 0xEDB88320), which every entry of a torch.save archive carries and PyTorch's own
/// reader checks: without it a damaged local header or a changed data byte loads silently.
/// </summary>
internal static class Crc32
{
    private static readonly uint[][] Tables = MakeTables();

    private static uint[][] MakeTables()
    {
        var tables = new uint[8][];
        for (var t = 0; t < 8; t++) tables[t] = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            var c = i;
            for (var k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            tables[0][i] = c;
        }
        for (var i = 0; i < 256; i++)
        {
            for (var t = 1; t < 8; t++) tables[t][i] = (tables[t - 1][i] >> 8) ^ tables[0][tables[t - 1][i] & 0xFF];
        }
        return tables;
    }

    /// <summary>Continues <paramref name="crc"/> (the running value, not yet complemented: start at 0xFFFFFFFF) over <paramref name="data"/>.</summary>
    public static uint Update(uint crc, ReadOnlySpan<byte> data)
    {
        var t = Tables;
        var i = 0;
        // Eight bytes a step ("slicing by 8").
        for (; i + 8 <= data.Length; i += 8)
        {
            crc ^= (uint)(data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24);
            crc = t[7][crc & 0xFF] ^ t[6][(crc >> 8) & 0xFF] ^ t[5][(crc >> 16) & 0xFF] ^ t[4][crc >> 24]
                  ^ t[3][data[i + 4]] ^ t[2][data[i + 5]] ^ t[1][data[i + 6]] ^ t[0][data[i + 7]];
        }
        for (; i < data.Length; i++) crc = t[0][(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
        return crc;
    }

    /// <summary>The CRC-32 of <paramref name="data"/>.</summary>
    public static uint Of(ReadOnlySpan<byte> data) => ~Update(0xFFFFFFFFu, data);
}

/// <summary>A read-only stream that passes another's bytes on and keeps their CRC-32 and count.</summary>
internal sealed class Crc32Stream : Stream
{
    private readonly Stream _inner;
    private uint _crc = 0xFFFFFFFFu;

    public Crc32Stream(Stream inner) => _inner = inner;

    /// <summary>The CRC-32 of the bytes read so far.</summary>
    public uint Crc => ~_crc;

    /// <summary>How many bytes have been read.</summary>
    public long Count { get; private set; }

    public override int Read(Span<byte> buffer)
    {
        var n = _inner.Read(buffer);
        _crc = Crc32.Update(_crc, buffer.Slice(0, Math.Max(n, 0)));
        Count += Math.Max(n, 0);
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
