using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace VmState.Linux;

/// <summary>
/// Decodes the kallsyms tables held in one buffer, given where each table starts. The format is the one written by
/// Linux <c>scripts/kallsyms.c</c> (<c>write_src</c>) and read by <c>kernel/kallsyms.c</c>
/// (<c>kallsyms_expand_symbol</c>): length-prefixed records of token indices, a 256-entry token table, markers every
/// 256 symbols, and one address slot per symbol.
/// </summary>
internal static class KallsymsDecoder
{
    /// <summary>Upper bound on the symbol count (a 6.x distro kernel has ~100k; allyesconfig ~400k).</summary>
    public const int MaxSymbols = 1 << 22;

    /// <summary><c>KSYM_NAME_LEN</c> is 512 since Linux 6.1; anything longer is corrupt.</summary>
    private const int MaxExpandedName = 1024;

    /// <summary>Where the tables are, as offsets into the buffer.</summary>
    public readonly record struct Positions(int NumSyms, int Names, int TokenTable, int TokenIndex, int Markers, int Seqs);

    /// <summary>One possible address table: its order name, encoding, offset and (for relative encodings) the relative base offset.</summary>
    public readonly record struct AddressCandidate(string Order, KallsymsAddressEncoding Encoding, int Table, int RelativeBase);

    /// <summary>The result, or null with <paramref name="failure"/> saying which check failed.</summary>
    public static Kallsyms? Decode(ReadOnlySpan<byte> buf, ulong baseAddress, bool bufferIsVirtual, Positions at,
        ReadOnlySpan<AddressCandidate> candidates, (string Name, ulong Value)? known, string source, out string failure)
    {
        if (!InBounds(buf, at.NumSyms, 4) || !InBounds(buf, at.TokenIndex, 512))
        {
            failure = "kallsyms_num_syms or kallsyms_token_index lies outside the memory read";
            return null;
        }

        uint count = BinaryPrimitives.ReadUInt32LittleEndian(buf[at.NumSyms..]);
        if (count is 0 or > MaxSymbols)
        {
            failure = $"kallsyms_num_syms = {count} is not a plausible symbol count (1..{MaxSymbols})";
            return null;
        }

        int n = (int)count;
        if (!ReadTokens(buf, at.TokenTable, at.TokenIndex, out byte[] tokenBytes, out int[] tokenStart, out failure))
        {
            return null;
        }

        int[] starts = new int[n + 1];
        bool big = true;
        int markers = at.Markers;
        if (!TryRecords(buf, at.Names, n, big: true, starts, ref markers))
        {
            markers = at.Markers;
            big = false;
            if (!TryRecords(buf, at.Names, n, big: false, starts, ref markers))
            {
                failure = $"the {n} name records at kallsyms_names do not end at kallsyms_markers with every marker matching (tried 1- and 2-byte lengths)";
                return null;
            }
        }

        if (!Expand(buf, starts, n, big, tokenBytes, tokenStart, out byte[] blob, out int[] nameAt, out failure))
        {
            return null;
        }

        int knownIndex = -1;
        if (known is (string knownName, _))
        {
            knownIndex = IndexOf(blob, nameAt, n, knownName);
            if (knownIndex < 0)
            {
                // _text and _stext coincide on x86-64; accept whichever the table has.
                knownIndex = IndexOf(blob, nameAt, n, knownName == "_stext" ? "_text" : "_stext");
            }
        }

        int textIndex = knownIndex >= 0 ? knownIndex : IndexOf(blob, nameAt, n, "_text");
        if (textIndex < 0)
        {
            textIndex = IndexOf(blob, nameAt, n, "_stext");
        }

        if (textIndex < 0)
        {
            failure = "neither _text nor _stext is among the decoded names";
            return null;
        }

        var tried = new List<string>();
        foreach (AddressCandidate c in candidates)
        {
            int width = c.Encoding == KallsymsAddressEncoding.Absolute ? 8 : 4;
            if (!InBounds(buf, c.Table, (long)width * n) || (c.RelativeBase >= 0 && !InBounds(buf, c.RelativeBase, 8))
                || (c.Encoding == KallsymsAddressEncoding.PlaceRelative && !bufferIsVirtual))
            {
                continue;
            }

            ulong relativeBase = c.RelativeBase >= 0 ? BinaryPrimitives.ReadUInt64LittleEndian(buf[c.RelativeBase..]) : 0;
            if (c.RelativeBase >= 0 && relativeBase < 0x8000_0000_0000_0000UL)
            {
                tried.Add($"{c.Order} {c.Encoding}: relative base 0x{relativeBase:x} is not a kernel address");
                continue;
            }

            ulong tableAddress = baseAddress + (ulong)c.Table;
            ulong text = AddressAt(buf, c, tableAddress, relativeBase, textIndex);
            bool textOk = known is (_, ulong want)
                ? text == want
                : c.RelativeBase >= 0 ? text == relativeBase : text >= 0xffff_ffff_8000_0000UL && (text & 0x1F_FFFF) == 0;
            if (!textOk)
            {
                tried.Add($"{c.Order} {c.Encoding}: {(known is null ? "_text" : known.Value.Name)} decodes to 0x{text:x}");
                continue;
            }

            ulong[] addresses = new ulong[n];
            if (!DecodeAll(buf, c, tableAddress, relativeBase, addresses))
            {
                // scripts/kallsyms.c sorts by address; per-CPU absolute values are small and sort first.
                tried.Add($"{c.Order} {c.Encoding}: decoded addresses are not in ascending order");
                continue;
            }

            var layout = new KallsymsLayout
            {
                Source = source,
                NumSyms = baseAddress + (ulong)at.NumSyms,
                Names = baseAddress + (ulong)at.Names,
                Markers = baseAddress + (ulong)markers,
                SeqsOfNames = at.Seqs >= 0 ? baseAddress + (ulong)at.Seqs : null,
                TokenTable = baseAddress + (ulong)at.TokenTable,
                TokenIndex = baseAddress + (ulong)at.TokenIndex,
                AddressTable = tableAddress,
                RelativeBaseAddress = c.RelativeBase >= 0 ? baseAddress + (ulong)c.RelativeBase : null,
                RelativeBase = c.RelativeBase >= 0 ? relativeBase : null,
                Encoding = c.Encoding,
                BigLengths = big,
                Order = c.Order,
            };
            failure = string.Empty;
            return new Kallsyms(blob, nameAt, addresses, layout);
        }

        failure = tried.Count == 0 ? "no address table candidate lies inside the memory read" : "no address encoding fits: " + string.Join("; ", tried);
        return null;
    }

    /// <summary>Decodes every address; false when they are not in ascending order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool DecodeAll(ReadOnlySpan<byte> buf, AddressCandidate c, ulong tableAddress, ulong relativeBase, ulong[] addresses)
    {
        bool sorted = true;
        for (int i = 0; i < addresses.Length; i++)
        {
            addresses[i] = AddressAt(buf, c, tableAddress, relativeBase, i);
            if (i > 0 && addresses[i] < addresses[i - 1])
            {
                sorted = false;
            }
        }

        return sorted;
    }

    private static bool InBounds(ReadOnlySpan<byte> buf, int offset, long length) => offset >= 0 && offset + length <= buf.Length;

    private static ulong AddressAt(ReadOnlySpan<byte> buf, AddressCandidate c, ulong tableAddress, ulong relativeBase, int i)
    {
        if (c.Encoding == KallsymsAddressEncoding.Absolute)
        {
            return BinaryPrimitives.ReadUInt64LittleEndian(buf[(c.Table + (8 * i))..]);
        }

        int v = BinaryPrimitives.ReadInt32LittleEndian(buf[(c.Table + (4 * i))..]);
        return c.Encoding switch
        {
            KallsymsAddressEncoding.BaseRelative => relativeBase + (uint)v,
            KallsymsAddressEncoding.AbsolutePercpu => v >= 0 ? (ulong)v : relativeBase - 1 - (ulong)(long)v,
            _ => tableAddress + (ulong)(4 * i) + (ulong)(long)v,
        };
    }

    /// <summary>Splits the token table using the token index (256 u16 offsets); each token is NUL-terminated.</summary>
    private static bool ReadTokens(ReadOnlySpan<byte> buf, int tokenTable, int tokenIndex, out byte[] bytes, out int[] start, out string failure)
    {
        bytes = [];
        start = new int[257];
        if (tokenTable < 0 || tokenTable >= buf.Length)
        {
            failure = "kallsyms_token_table lies outside the memory read";
            return false;
        }

        byte[] all = new byte[256 * 16];
        int used = 0;
        for (int i = 0; i < 256; i++)
        {
            int at = tokenTable + BinaryPrimitives.ReadUInt16LittleEndian(buf[(tokenIndex + (2 * i))..]);
            int len = at < buf.Length ? buf[at..Math.Min(buf.Length, at + 256)].IndexOf((byte)0) : -1;
            if (len < 0)
            {
                failure = $"token {i} at offset {at - tokenTable} of kallsyms_token_table has no terminating NUL within 256 bytes";
                return false;
            }

            start[i] = used;
            if (used + len > all.Length)
            {
                Array.Resize(ref all, Math.Max(all.Length * 2, used + len));
            }

            buf.Slice(at, len).CopyTo(all.AsSpan(used));
            used += len;
        }

        start[256] = used;
        bytes = all[..used];
        failure = string.Empty;
        return true;
    }

    /// <summary>
    /// Walks <paramref name="n"/> records from <paramref name="names"/> and checks them against the markers (byte
    /// offset of every 256th record). When <paramref name="markers"/> is negative the markers are taken to follow the
    /// names at the next 8-byte boundary (<c>output_label</c> aligns every table), and that offset is returned.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool TryRecords(ReadOnlySpan<byte> buf, int names, int n, bool big, int[] starts, ref int markers)
    {
        if (names < 0)
        {
            return false;
        }

        int o = names;
        for (int i = 0; i < n; i++)
        {
            if (o >= buf.Length)
            {
                return false;
            }

            int len = buf[o];
            int header = 1;
            if (big && (len & 0x80) != 0)
            {
                // "kallsyms: support big kernel symbols" (Linux 6.1, 73bbb94466fd): ULEB128, at most 2 bytes.
                if (o + 1 >= buf.Length)
                {
                    return false;
                }

                len = (len & 0x7F) | (buf[o + 1] << 7);
                header = 2;
            }

            if (len == 0)
            {
                return false;
            }

            starts[i] = o;
            o += header + len;
        }

        if (o > buf.Length)
        {
            return false;
        }

        starts[n] = o;
        int m = (n + 255) / 256;
        int at = markers >= 0 ? markers : (o + 7) & ~7;
        if (markers >= 0 && ((o + 7) & ~7) != markers)
        {
            return false;
        }

        if (!InBounds(buf, at, 4L * m))
        {
            return false;
        }

        for (int k = 0; k < m; k++)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(buf[(at + (4 * k))..]) != (uint)(starts[256 * k] - names))
            {
                return false;
            }
        }

        markers = at;
        return true;
    }

    /// <summary>Expands every record into one blob: at <c>nameAt[i]</c> the type letter, then the name up to <c>nameAt[i + 1]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool Expand(ReadOnlySpan<byte> buf, int[] starts, int n, bool big, byte[] tokenBytes, int[] tokenStart,
        out byte[] blob, out int[] nameAt, out string failure)
    {
        // Tokens are a few bytes long: keep each one's first 8 bytes in a ulong and store 8 bytes per token (the
        // blob keeps 8 bytes of slack), advancing by the real length; longer tokens are copied.
        Span<ulong> head = stackalloc ulong[256];
        Span<int> length = stackalloc int[256];
        Span<byte> eight = stackalloc byte[8];
        for (int t = 0; t < 256; t++)
        {
            length[t] = tokenStart[t + 1] - tokenStart[t];
            eight.Clear();
            tokenBytes.AsSpan(tokenStart[t], Math.Min(8, length[t])).CopyTo(eight);
            head[t] = BinaryPrimitives.ReadUInt64LittleEndian(eight);
        }

        nameAt = new int[n + 1];
        blob = new byte[Math.Max(4096, (starts[n] - starts[0]) * 3)];
        int pos = 0;
        for (int i = 0; i < n; i++)
        {
            int o = starts[i];
            int header = big && (buf[o] & 0x80) != 0 ? 2 : 1;
            ReadOnlySpan<byte> record = buf.Slice(o + header, starts[i + 1] - o - header);
            if (blob.Length - pos < MaxExpandedName + 64)
            {
                Array.Resize(ref blob, blob.Length * 2);
            }

            nameAt[i] = pos;
            int begin = pos;
            foreach (byte t in record)
            {
                int tl = length[t];
                if (pos - begin + tl > MaxExpandedName)
                {
                    failure = $"symbol {i} expands to more than {MaxExpandedName} characters";
                    return false;
                }

                if (tl <= 8)
                {
                    Unsafe.WriteUnaligned(ref blob[pos], head[t]);
                }
                else
                {
                    tokenBytes.AsSpan(tokenStart[t], tl).CopyTo(blob.AsSpan(pos));
                }

                pos += tl;
            }

            if (pos - begin < 2)
            {
                failure = $"symbol {i} expands to '{System.Text.Encoding.Latin1.GetString(blob, begin, pos - begin)}', shorter than a type letter and a name";
                return false;
            }
        }

        nameAt[n] = pos;
        failure = string.Empty;
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int IndexOf(byte[] blob, int[] nameAt, int n, string name)
    {
        Span<byte> want = stackalloc byte[name.Length];
        for (int i = 0; i < name.Length; i++)
        {
            want[i] = (byte)name[i];
        }

        for (int i = 0; i < n; i++)
        {
            int s = nameAt[i] + 1;
            if (nameAt[i + 1] - s == want.Length && blob.AsSpan(s, want.Length).SequenceEqual(want))
            {
                return i;
            }
        }

        return -1;
    }
}
