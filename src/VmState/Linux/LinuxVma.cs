using System.Globalization;

namespace VmState.Linux;

/// <summary>One virtual memory area of a process (a line of <c>/proc/PID/maps</c>).</summary>
/// <param name="Start">First address (<c>vm_start</c>).</param>
/// <param name="End">One past the last address (<c>vm_end</c>).</param>
/// <param name="Flags">The raw <c>vm_flags</c>.</param>
/// <param name="Offset">File offset in bytes (<c>vm_pgoff</c> × 4096) for a file mapping, else 0.</param>
/// <param name="Major">Device major number of the mapped file's filesystem.</param>
/// <param name="Minor">Device minor number.</param>
/// <param name="Inode">Inode number of the mapped file, 0 for anonymous memory.</param>
/// <param name="Name">The file's path, a bracketed name (<c>[heap]</c>, <c>[stack]</c>, <c>[vdso]</c>, <c>[anon:NAME]</c>) or empty.</param>
/// <param name="Address">Address of the <c>struct vm_area_struct</c>.</param>
/// <param name="File">Address of the mapped <c>struct file</c>, 0 for none.</param>
public sealed record LinuxVma(ulong Start, ulong End, ulong Flags, ulong Offset, uint Major, uint Minor, ulong Inode, string Name, ulong Address, ulong File)
{
    /// <summary>The VMA's <c>anon_vma</c>: non-zero once anonymous pages were faulted into it (written to).</summary>
    public ulong AnonVma { get; init; }

    /// <summary>VM_READ.</summary>
    public bool Readable => (Flags & 0x1) != 0;

    /// <summary>VM_WRITE.</summary>
    public bool Writable => (Flags & 0x2) != 0;

    /// <summary>VM_EXEC.</summary>
    public bool Executable => (Flags & 0x4) != 0;

    /// <summary>VM_MAYSHARE: shown as 's' (else 'p', private).</summary>
    public bool Shared => (Flags & 0x80) != 0;

    /// <summary>The permission column: <c>r-xp</c>.</summary>
    public string Permissions => string.Concat(Readable ? "r" : "-", Writable ? "w" : "-", Executable ? "x" : "-", Shared ? "s" : "p");

    /// <summary>The line exactly as <c>/proc/PID/maps</c> prints it (<c>show_map_vma</c>: the name padded to column 73).</summary>
    public string Format()
    {
        string head = string.Create(CultureInfo.InvariantCulture, $"{Start:x8}-{End:x8} {Permissions} {Offset:x8} {Major:x2}:{Minor:x2} {Inode} ");
        if (Name.Length == 0)
        {
            return head;
        }

        const int NameColumn = 25 + (8 * 6) - 1; // seq_setwidth(m, 25 + sizeof(void *) * 6 - 1), then seq_pad(m, ' ')
        return string.Concat(head.PadRight(NameColumn), " ", Name);
    }
}
