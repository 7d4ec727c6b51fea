using System.Buffers.Binary;
using System.Text;
using VmState.Linux.Btf;

namespace VmState.Linux;

/// <summary>One record of the kernel log (a line of <c>dmesg</c>).</summary>
/// <param name="Sequence">The record's sequence number (<c>printk_info.seq</c>).</param>
/// <param name="TimestampNs">Nanoseconds since boot (<c>printk_info.ts_nsec</c>, the local clock).</param>
/// <param name="Level">Log level 0 (emerg) .. 7 (debug).</param>
/// <param name="Facility">Syslog facility (0 = kernel, 1 = user, e.g. /dev/kmsg writes).</param>
/// <param name="Caller">Who logged it: "T&lt;pid&gt;" for a task, "C&lt;cpu&gt;" outside task context.</param>
/// <param name="Text">The message, without a trailing newline (may hold several lines).</param>
public sealed record KernelLogRecord(ulong Sequence, ulong TimestampNs, int Level, int Facility, string Caller, string Text)
{
    /// <summary>The record as <c>dmesg</c> prints it: <c>[    5.123456] text</c>.</summary>
    public string Format() => $"[{TimestampNs / 1_000_000_000,5}.{TimestampNs % 1_000_000_000 / 1000:D6}] {Text}";

    /// <summary>The level's name as <c>dmesg -x</c> prints it (<c>emerg</c> .. <c>debug</c>; the low 3 bits of <see cref="Level"/>).</summary>
    public string LevelName => SyslogNames.Levels[Level & 7];

    /// <summary>The facility's name as <c>dmesg -x</c> prints it (<c>kern</c>, <c>user</c>, .. <c>local7</c>), or null for a number past them.</summary>
    public string? FacilityName => Facility >= 0 && Facility < SyslogNames.Facilities.Length ? SyslogNames.Facilities[Facility] : null;
}

/// <summary>The syslog level and facility names (util-linux <c>dmesg.c</c>, glibc <c>syslog.h</c>).</summary>
internal static class SyslogNames
{
    public static readonly string[] Levels = ["emerg", "alert", "crit", "err", "warn", "notice", "info", "debug"];

    public static readonly string[] Facilities =
        ["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "res0", "res1", "res2", "res3",
         "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"];
}

/// <summary>
/// The kernel log read from the lockless printk ring buffer of Linux 5.10+ (<c>kernel/printk/printk_ringbuffer.c</c>),
/// the structure behind <c>dmesg</c>: <c>prb</c> points at a descriptor ring (state word, text block position) with
/// a parallel array of <c>printk_info</c> and a text data ring. Records are walked from <c>tail_id</c> to
/// <c>head_id</c>; those in the committed or finalized state are kept, reserved (being written) and reusable ones
/// are skipped. All layouts come from the kernel's BTF.
/// </summary>
public static class KernelLog
{
    /// <summary>Upper bound on the descriptor count (2^count_bits) accepted from guest memory.</summary>
    private const int MaxRingBits = 22;

    /// <summary>Upper bound on the text ring size: 128 MiB (log_buf_len beyond that is not a real configuration).</summary>
    private const int MaxTextBits = 27;

    private const int DescFlagsShift = 62;           // DESC_FLAGS_SHIFT = DESC_SV_BITS - 2
    private const ulong DescIdMask = ~(3UL << DescFlagsShift);
    private const int DescCommitted = 1;              // enum desc_state
    private const int DescFinalized = 2;
    private const uint CallerIsCpu = 0x8000_0000;     // printk_caller_id(): CPU ids have the top bit set

    /// <summary>The records in the ring, oldest first.</summary>
    /// <exception cref="KernelDataException">No <c>prb</c> (a kernel before 5.10), or the ring's fields are inconsistent or unreadable.</exception>
    public static IReadOnlyList<KernelLogRecord> Read(LinuxKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        if (!kernel.Symbols.TryGetAddress("prb", out _))
        {
            throw new KernelDataException("kernel log", "kallsyms has no 'prb': the kernel predates the lockless printk ring buffer (Linux 5.10), which is the only log format read");
        }

        BtfTypes types = kernel.Types;
        KernelObject rb = kernel.Object("prb").Deref();
        KernelObject descRing = rb.Member("desc_ring");
        KernelObject textRing = rb.Member("text_data_ring");

        int countBits = (int)descRing.Member("count_bits").ToUInt64();
        int sizeBits = (int)textRing.Member("size_bits").ToUInt64();
        // The kernel sizes the text ring at 2^(count_bits + PRB_AVGBITS 5) (printk.c log_buf_len); anything far from
        // that is not a ring buffer, and the arrays below are allocated from these numbers.
        if (sizeBits is < 8 or > MaxTextBits || countBits < 1 || countBits > sizeBits - 3 || countBits > MaxRingBits)
        {
            throw new KernelDataException(rb.Address, "printk ring buffer", $"count_bits {countBits} / size_bits {sizeBits}: expected a text ring of 2^8..2^{MaxTextBits} bytes with at most one descriptor per 8 bytes (2^{MaxRingBits} at most)");
        }

        ulong descs = descRing.Member("descs").ToUInt64();
        ulong infos = descRing.Member("infos").ToUInt64();
        ulong data = textRing.Member("data").ToUInt64();
        ulong headId = descRing.Member("head_id.counter").ToUInt64();
        ulong tailId = descRing.Member("tail_id.counter").ToUInt64();

        int descType = types.FindType("struct prb_desc");
        int infoType = types.FindType("struct printk_info");
        int descSize = (int)types.SizeOf(descType);
        int infoSize = (int)types.SizeOf(infoType);
        int stateOff = (int)types.Member(descType, "state_var").ByteOffset;
        int beginOff = (int)types.Member(descType, "text_blk_lpos.begin").ByteOffset;
        int nextOff = (int)types.Member(descType, "text_blk_lpos.next").ByteOffset;
        int seqOff = (int)types.Member(infoType, "seq").ByteOffset;
        int tsOff = (int)types.Member(infoType, "ts_nsec").ByteOffset;
        int lenOff = (int)types.Member(infoType, "text_len").ByteOffset;
        int facOff = (int)types.Member(infoType, "facility").ByteOffset;
        BtfMemberLocation level = types.Member(infoType, "level");
        int callerOff = (int)types.Member(infoType, "caller_id").ByteOffset;

        int count = 1 << countBits;
        ulong ringSize = 1UL << sizeBits;
        byte[] descBytes = new byte[(long)count * descSize];
        byte[] infoBytes = new byte[(long)count * infoSize];
        byte[] text = new byte[ringSize];
        kernel.ReadExactly(descs, descBytes, "printk descriptor ring (prb->desc_ring.descs)");
        kernel.ReadExactly(infos, infoBytes, "printk info array (prb->desc_ring.infos)");
        kernel.ReadExactly(data, text, "printk text ring (prb->text_data_ring.data)");

        // A running guest may recycle a record between the reads above: read the descriptors again and keep only
        // records whose state word and text position did not change meanwhile (as the kernel's own readers
        // re-check the descriptor after copying the text). For a snapshot the two reads are the same.
        byte[] descAfter = new byte[descBytes.Length];
        kernel.ReadExactly(descs, descAfter, "printk descriptor ring (prb->desc_ring.descs)");

        var records = new List<KernelLogRecord>();
        ulong id = tailId & DescIdMask;
        ulong head = headId & DescIdMask;
        for (int walked = 0; ; walked++)
        {
            if (walked > count)
            {
                throw new KernelDataException(descs, "printk descriptor ring", $"tail_id 0x{tailId:x} does not reach head_id 0x{headId:x} within the {count} descriptors");
            }

            int index = (int)(id & (ulong)(count - 1));
            ReadOnlySpan<byte> desc = descBytes.AsSpan(index * descSize, descSize);
            ulong stateVar = BinaryPrimitives.ReadUInt64LittleEndian(desc[stateOff..]);
            int state = (int)(stateVar >> DescFlagsShift);
            bool stable = desc.SequenceEqual(descAfter.AsSpan(index * descSize, descSize));
            if (stable && (stateVar & DescIdMask) == id && state is DescCommitted or DescFinalized)
            {
                ReadOnlySpan<byte> info = infoBytes.AsSpan(index * infoSize, infoSize);
                ulong begin = BinaryPrimitives.ReadUInt64LittleEndian(desc[beginOff..]);
                ulong next = BinaryPrimitives.ReadUInt64LittleEndian(desc[nextOff..]);
                int textLen = BinaryPrimitives.ReadUInt16LittleEndian(info[lenOff..]);
                string message = TextOf(text, sizeBits, begin, next, textLen);
                byte levelByte = info[(int)(level.BitOffset / 8)];
                int lvl = level.BitfieldSize != 0 ? (levelByte >> (int)(level.BitOffset % 8)) & ((1 << (int)level.BitfieldSize) - 1) : levelByte;
                uint caller = BinaryPrimitives.ReadUInt32LittleEndian(info[callerOff..]);
                records.Add(new KernelLogRecord(
                    BinaryPrimitives.ReadUInt64LittleEndian(info[seqOff..]),
                    BinaryPrimitives.ReadUInt64LittleEndian(info[tsOff..]),
                    lvl,
                    info[facOff],
                    (caller & CallerIsCpu) != 0 ? $"C{caller & ~CallerIsCpu}" : $"T{caller}",
                    message));
            }

            if (id == head)
            {
                break;
            }

            id = (id + 1) & DescIdMask;
        }

        records.Sort((a, b) => a.Sequence.CompareTo(b.Sequence));
        return records;
    }

    /// <summary>
    /// The text of a data block (<c>get_data()</c>): a regular block lies at begin's index; a block that would
    /// cross the end of the ring is stored at index 0 (<c>data_alloc()</c>). Each block starts with the
    /// descriptor id (an unsigned long). Data-less blocks (lpos bit 0 set: FAILED_LPOS, NO_LPOS) have no text.
    /// </summary>
    private static string TextOf(byte[] ring, int sizeBits, ulong begin, ulong next, int textLen)
    {
        if ((begin & 1) != 0 || (next & 1) != 0)
        {
            return string.Empty;
        }

        ulong size = 1UL << sizeBits;
        ulong start;
        ulong length;
        if (begin >> sizeBits == next >> sizeBits && begin < next)
        {
            start = begin & (size - 1);
            length = next - begin;
        }
        else if ((begin + size) >> sizeBits == next >> sizeBits)
        {
            start = 0;
            length = next & (size - 1);
        }
        else
        {
            return string.Empty; // an inconsistent (being-recycled) block: no text, as the kernel's reader treats it
        }

        if (length < 8 || start + length > size)
        {
            return string.Empty;
        }

        int n = (int)Math.Min((ulong)textLen, length - 8);
        return Encoding.UTF8.GetString(ring, (int)start + 8, n).TrimEnd('\n');
    }
}
