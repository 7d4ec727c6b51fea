namespace VmState.Formats.Elf;

/// <summary>
/// Writes the file bytes of one PT_LOAD segment when <see cref="ElfCoreLayout.WriteTo(Microsoft.Win32.SafeHandles.SafeFileHandle, CancellationToken)"/>
/// emits the core. Bytes it does not write stay zero and, in a file system that supports it, unallocated (a hole):
/// a source writes only the parts it has data for.
/// </summary>
/// <param name="output">Where the segment's bytes go, at offsets relative to the segment's start.</param>
/// <param name="cancellationToken">Cancels the write.</param>
public delegate void ElfSegmentSource(ElfSegmentOutput output, CancellationToken cancellationToken);
