using System.Buffers.Binary;

namespace VmState.Linux;

/// <summary>
/// Locates the kallsyms tables by their structure alone, never by version number (the Debian 6.1.y kernel already has
/// the 6.2 <c>kallsyms_seqs_of_names</c> table): see <c>profile-free-linux.md</c> §2.3. The token table is found by
/// the signature of its digit slots, confirmed by the token index that must follow it; the markers before it (or
/// before <c>kallsyms_seqs_of_names</c>) give the symbol count range; <c>kallsyms_num_syms</c> and the names are
/// accepted only when every marker equals the byte offset of its record.
/// </summary>
internal static class KallsymsScanner
{
    /// <summary>How far back from the markers the names may start (the names of ~400k symbols fit in far less).</summary>
    private const int MaxNamesSpan = 64 << 20;

    /// <summary>Longest token accepted (the compressor's tokens are a few bytes; the guard rejects text that is not a table).</summary>
    private const int MaxToken = 64;

    /// <summary>Largest step between two markers (256 names of up to 512 characters each, compressed).</summary>
    private const uint MaxMarkerStep = 0x20_0000;

    /// <summary>Slots '0'..'9' of the token table: digits occur in real names, so each is its own one-character token.</summary>
    private static ReadOnlySpan<byte> Digits => "0\01\02\03\04\05\06\07\08\09\0"u8;

    public static Kallsyms Scan(ReadOnlySpan<byte> img, ulong baseAddress, bool isVirtual, (string, ulong)? known)
    {
        var reasons = new List<string>();
        int signatures = 0;
        int rejected = 0;
        int from = 0;
        while (from < img.Length)
        {
            int i = img[from..].IndexOf(Digits);
            if (i < 0)
            {
                break;
            }

            int p = from + i;
            from = p + 1;

            // ':' never occurs in symbol names; a UTF-16LE run of consecutive ASCII continues with ":\0". (A following
            // "\0\0" is not rejected here: a small kernel can leave slots ':' and ';' empty; the token index decides.)
            if (p + 22 <= img.Length && img[p + 21] == 0 && img[p + 20] == (byte)':')
            {
                rejected++;
                continue;
            }

            signatures++;
            if (TokenTableAt(img, p, out int tokenTable, out int tokenIndex))
            {
                Kallsyms? k = TryTables(img, baseAddress, isVirtual, tokenTable, tokenIndex, known, out string why);
                if (k is not null)
                {
                    return k;
                }

                reasons.Add($"token table at 0x{baseAddress + (ulong)tokenTable:x}: {why}");
            }
        }

        string detail = reasons.Count > 0 ? string.Join("; ", reasons) : $"{signatures + rejected} digit-token signature hit(s) ({rejected} continuing like a UTF-16 or character-class table), none followed by a matching kallsyms_token_index";
        throw new KernelDataException(baseAddress, $"kallsyms scan of {img.Length} bytes", $"no kallsyms tables found: {detail}");
    }

    /// <summary>Walks back 48 tokens from the '0' slot to slot 0, forward 256 tokens, and finds the token index after them.</summary>
    private static bool TokenTableAt(ReadOnlySpan<byte> img, int digitZero, out int tokenTable, out int tokenIndex)
    {
        tokenTable = tokenIndex = -1;
        int q = digitZero;
        for (int k = 0; k < 48; k++)
        {
            // q is the start of a token; the byte before it is the previous token's NUL.
            if (q < 1)
            {
                return false;
            }

            int lo = Math.Max(0, q - 1 - (MaxToken + 1));
            int r = img[lo..(q - 1)].LastIndexOf((byte)0);
            if (r < 0)
            {
                return false;
            }

            q = lo + r + 1;
        }

        Span<byte> index = stackalloc byte[512];
        int t = q;
        for (int s = 0; s < 256; s++)
        {
            int e = t < img.Length ? img[t..Math.Min(img.Length, t + MaxToken + 1)].IndexOf((byte)0) : -1;
            if (e < 0 || t - q > ushort.MaxValue)
            {
                return false;
            }

            BinaryPrimitives.WriteUInt16LittleEndian(index[(2 * s)..], (ushort)(t - q));
            t += e + 1;
        }

        // The index follows the table at the next 8-byte boundary; allow generous padding. The bound covers the whole needle.
        int windowEnd = Math.Min(img.Length, t + 64 + 512);
        int ti = t < windowEnd ? img[t..windowEnd].IndexOf(index) : -1;
        if (ti < 0)
        {
            return false;
        }

        tokenTable = q;
        tokenIndex = t + ti;
        return true;
    }

    private static Kallsyms? TryTables(ReadOnlySpan<byte> img, ulong baseAddress, bool isVirtual, int tokenTable, int tokenIndex, (string, ulong)? known, out string why)
    {
        // Layout ≤6.1 mainline and 6.4+: ... names, markers, token_table.
        if (MarkersEndingAt(img, tokenTable) is (int directMarkers, int directCount) && FindNumSyms(img, directMarkers, directCount) is (int directNumSyms, int directN))
        {
            return Finish(img, baseAddress, isVirtual, directNumSyms, directN, directMarkers, -1, tokenTable, tokenIndex, known, out why);
        }

        // Layout 6.2/6.3 (and backports): ... names, markers, seqs_of_names (3 bytes per symbol), token_table.
        int stop = Math.Max(16, tokenTable - (3 * KallsymsDecoder.MaxSymbols) - 8);
        for (int k = (tokenTable - 8) & ~3; k > stop; k -= 4)
        {
            uint last = U32(img, k - 4);
            uint prev = U32(img, k - 8);
            if (last == 0 || prev >= last || last - prev >= MaxMarkerStep)
            {
                continue;
            }

            if (MarkersEndingAt(img, k) is not (int ms, int m) || m <= 8)
            {
                continue;
            }

            int seqs = (ms + (4 * m) + 7) & ~7;
            if (FindNumSyms(img, ms, m) is (int numSyms, int n) && tokenTable - (seqs + (3 * n)) is >= 0 and < 8 && IsPermutation(img, seqs, n))
            {
                return Finish(img, baseAddress, isVirtual, numSyms, n, ms, seqs, tokenTable, tokenIndex, known, out why);
            }
        }

        why = "no kallsyms_markers run (strictly increasing from 0) with matching kallsyms_num_syms and names before it";
        return null;
    }

    private static Kallsyms? Finish(ReadOnlySpan<byte> img, ulong baseAddress, bool isVirtual, int numSyms, int n, int markers, int seqs,
        int tokenTable, int tokenIndex, (string, ulong)? known, out string why)
    {
        var at = new KallsymsDecoder.Positions(numSyms, numSyms + 8, tokenTable, tokenIndex, markers, seqs);

        // Address table candidates (scripts/kallsyms.c write_src): before 6.4 offsets/addresses precede num_syms,
        // with relative_base in between; from 6.4 (Masahiro Yamada's reordering) they follow token_index.
        int relBase = numSyms - 8;
        int offsetsPre = relBase - (((4 * n) + 7) & ~7);
        int after = (tokenIndex + 512 + 7) & ~7;
        int relBasePost = (after + (4 * n) + 7) & ~7;
        KallsymsDecoder.AddressCandidate[] candidates =
        [
            new("pre-6.4", KallsymsAddressEncoding.AbsolutePercpu, offsetsPre, relBase),
            new("pre-6.4", KallsymsAddressEncoding.BaseRelative, offsetsPre, relBase),
            new("pre-6.4", KallsymsAddressEncoding.Absolute, numSyms - (8 * n), -1),
            new("6.4+", KallsymsAddressEncoding.AbsolutePercpu, after, relBasePost),
            new("6.4+", KallsymsAddressEncoding.BaseRelative, after, relBasePost),
            new("6.4+", KallsymsAddressEncoding.PlaceRelative, after, -1),
            new("6.4+", KallsymsAddressEncoding.Absolute, after, -1),
        ];
        return KallsymsDecoder.Decode(img, baseAddress, isVirtual, at, candidates, known, isVirtual ? "structural scan of the kernel image" : "structural scan of physical memory", out why);
    }

    /// <summary>
    /// The markers run that ends at <paramref name="limit"/> (after at most 4 bytes of zero padding): u32 values that
    /// strictly increase from 0 in plausible steps. Returns its start and entry count.
    /// </summary>
    private static (int Start, int Count)? MarkersEndingAt(ReadOnlySpan<byte> img, int limit)
    {
        int k = limit - 4;
        if (k >= 0 && U32(img, k) == 0)
        {
            k -= 4;
        }

        int count = 0;
        uint after = 0;
        while (k >= 0)
        {
            uint v = U32(img, k);
            if (count > 0 && !(v < after && after - v < MaxMarkerStep))
            {
                return null;
            }

            count++;
            if (v == 0)
            {
                return count > 1 ? (k, count) : null;
            }

            if (count > (KallsymsDecoder.MaxSymbols / 256) + 1)
            {
                return null;
            }

            after = v;
            k -= 4;
        }

        return null;
    }

    /// <summary>
    /// <c>kallsyms_num_syms</c>: an 8-aligned u32 N in (256·(m−1), 256·m] followed by a zero pad, whose N name
    /// records end exactly at the markers with every marker matching.
    /// </summary>
    private static (int At, int Count)? FindNumSyms(ReadOnlySpan<byte> img, int markers, int m)
    {
        long lo = (256L * (m - 1)) + 1;
        long hi = 256L * m;
        int stop = Math.Max(0, markers - MaxNamesSpan);
        int[]? starts = null;
        for (int p = (markers - 16) & ~7; p >= stop; p -= 8)
        {
            uint n = U32(img, p);
            if (n < lo || n > hi || U32(img, p + 4) != 0)
            {
                continue;
            }

            starts ??= new int[hi + 1];
            foreach (bool big in stackalloc[] { true, false })
            {
                if (RecordsMatch(img, p + 8, (int)n, big, markers, m, starts))
                {
                    return (p, (int)n);
                }
            }
        }

        return null;
    }

    private static bool RecordsMatch(ReadOnlySpan<byte> img, int names, int n, bool big, int markers, int m, int[] starts)
    {
        int o = names;
        for (int i = 0; i < n; i++)
        {
            if (o >= markers)
            {
                return false;
            }

            int len = img[o];
            int header = 1;
            if (big && (len & 0x80) != 0)
            {
                len = (len & 0x7F) | (img[o + 1] << 7);
                header = 2;
            }

            if (len == 0)
            {
                return false;
            }

            starts[i] = o;
            o += header + len;
        }

        if (((o + 7) & ~7) != markers)
        {
            return false;
        }

        for (int k = 0; k < m; k++)
        {
            if (U32(img, markers + (4 * k)) != (uint)(starts[256 * k] - names))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>kallsyms_seqs_of_names: N big-endian 24-bit indices forming a permutation of 0..N−1 (kernel/kallsyms.c get_symbol_seq).</summary>
    private static bool IsPermutation(ReadOnlySpan<byte> img, int seqs, int n)
    {
        if (seqs + (3L * n) > img.Length)
        {
            return false;
        }

        var seen = new System.Collections.BitArray(n);
        for (int i = 0; i < n; i++)
        {
            int o = seqs + (3 * i);
            int v = (img[o] << 16) | (img[o + 1] << 8) | img[o + 2];
            if (v >= n || seen[v])
            {
                return false;
            }

            seen[v] = true;
        }

        return true;
    }

    private static uint U32(ReadOnlySpan<byte> img, int at) => at >= 0 && at + 4 <= img.Length ? BinaryPrimitives.ReadUInt32LittleEndian(img[at..]) : 0;
}
