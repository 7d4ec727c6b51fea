using System.Buffers.Binary;
using System.Text;
using VmState.Memory;

namespace VmState.Machine;

/// <summary>
/// Finds the guest kernel's VMCOREINFO ELF note: first where QEMU's vmcoreinfo device says the guest put it
/// (QEMU 7.2 <c>hw/misc/vmcoreinfo.c</c>, the "vmcoreinfo" section), then by scanning RAM for the note header.
/// </summary>
public static class VmcoreinfoLocator
{
    private const int MaxNoteSize = 1 << 20;
    private static readonly byte[] s_name = "VMCOREINFO\0"u8.ToArray();

    /// <summary>The whole note (header, name, descriptor) and how it was found, or null.</summary>
    public static (byte[] Note, string How)? Find(MachineState machine, bool scan)
    {
        if (machine.Origin.CarriedVmcoreinfoNote is byte[] carried)
        {
            return (carried, "note in the input core");
        }

        if (machine.FindDevice("vmcoreinfo")?.State is VmsdState s
            && s.Field("has_vmcoreinfo")?.Integer == 1
            && s.Field("vmcoreinfo.guest_format")?.Integer == 1
            && s.Field("vmcoreinfo.paddr")?.Integer is ulong paddr
            && s.Field("vmcoreinfo.size")?.Integer is ulong size
            && size is >= 24 and <= MaxNoteSize)
        {
            byte[] buffer = new byte[size];
            if (machine.Memory.Read(paddr, buffer) == buffer.Length && TryTrim(buffer) is byte[] note)
            {
                return (note, $"vmcoreinfo device (guest physical 0x{paddr:x})");
            }
        }

        if (scan && ScanRam(machine.Memory) is (byte[] found, ulong at))
        {
            return (found, $"RAM scan (guest physical 0x{at:x})");
        }

        return null;
    }

    /// <summary>The key=value text of a VMCOREINFO note.</summary>
    public static string Text(byte[] note)
    {
        uint descSize = BinaryPrimitives.ReadUInt32LittleEndian(note.AsSpan(4));
        return Encoding.ASCII.GetString(note, 24, (int)Math.Min(descSize, (uint)(note.Length - 24))).TrimEnd('\0');
    }

    private static byte[]? TryTrim(byte[] buffer)
    {
        uint nameSize = BinaryPrimitives.ReadUInt32LittleEndian(buffer);
        uint descSize = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(4));
        if (nameSize != 11 || !buffer.AsSpan(12, 11).SequenceEqual(s_name) || descSize > buffer.Length - 24)
        {
            return null;
        }

        return buffer.AsSpan(0, 24 + (int)((descSize + 3) & ~3u)).ToArray();
    }

    private static (byte[], ulong)? ScanRam(IPhysicalMemory memory)
    {
        const int Chunk = 1 << 20;
        byte[] buffer = new byte[Chunk + 64];
        ISparseMemory? sparse = memory as ISparseMemory;
        foreach (MemoryRange r in memory.Ranges)
        {
            for (ulong a = r.Start; a < r.End; a += Chunk)
            {
                // A window the memory knows is all zero cannot hold the note: skip it unread (a large guest with
                // little touched memory is mostly such windows).
                if (sparse is not null && sparse.IsZero(a, Math.Min((ulong)buffer.Length, r.End - a)))
                {
                    continue;
                }

                int n = memory.Read(a, buffer.AsSpan(0, (int)Math.Min((ulong)buffer.Length, r.End - a)));
                ReadOnlySpan<byte> span = buffer.AsSpan(0, n);
                int from = 0;
                while (true)
                {
                    int i = span[from..].IndexOf(s_name);
                    if (i < 0)
                    {
                        break;
                    }

                    int at = from + i;
                    from = at + 1;
                    if (at < 12 || at - 12 >= Chunk)
                    {
                        continue;
                    }

                    ReadOnlySpan<byte> header = span[(at - 12)..];
                    if (BinaryPrimitives.ReadUInt32LittleEndian(header) != 11 || BinaryPrimitives.ReadUInt32LittleEndian(header[8..]) != 0
                        || !span[(at + 12)..].StartsWith("OSRELEASE="u8))
                    {
                        continue;
                    }

                    uint descSize = BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
                    if (descSize is 0 or > MaxNoteSize)
                    {
                        continue;
                    }

                    byte[] note = new byte[24 + ((descSize + 3) & ~3u)];
                    ulong noteAddress = a + (ulong)at - 12;
                    if (memory.Read(noteAddress, note) == note.Length)
                    {
                        return (note, noteAddress);
                    }
                }
            }
        }

        return null;
    }
}
