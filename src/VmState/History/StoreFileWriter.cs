using System.Buffers.Binary;
using System.Text;

namespace VmState.History;

/// <summary>Builds one store file in memory, little-endian (the counterpart of <see cref="StoreFileReader"/>).</summary>
internal sealed class StoreFileWriter
{
    private readonly MemoryStream _out = new();

    public long Length => _out.Length;

    public byte[] ToArray() => _out.ToArray();

    public ReadOnlySpan<byte> Written => _out.GetBuffer().AsSpan(0, (int)_out.Length);

    public void Bytes(ReadOnlySpan<byte> b) => _out.Write(b);

    public void U8(byte v) => _out.WriteByte(v);

    public void U16(ushort v)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, v);
        _out.Write(b);
    }

    public void U32(uint v)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, v);
        _out.Write(b);
    }

    public void U64(ulong v)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, v);
        _out.Write(b);
    }

    public void I64(long v) => U64((ulong)v);

    public void U128(UInt128 v)
    {
        Span<byte> b = stackalloc byte[16];
        BinaryPrimitives.WriteUInt128LittleEndian(b, v);
        _out.Write(b);
    }

    public void VarUInt(ulong v)
    {
        while (v >= 0x80)
        {
            _out.WriteByte((byte)(v | 0x80));
            v >>= 7;
        }

        _out.WriteByte((byte)v);
    }

    public void Str(string s)
    {
        byte[] b = Encoding.UTF8.GetBytes(s);
        if (b.Length > ushort.MaxValue)
        {
            throw new ArgumentException("string too long for a store field", nameof(s));
        }

        U16((ushort)b.Length);
        _out.Write(b);
    }
}
