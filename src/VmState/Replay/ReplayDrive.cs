namespace VmState.Replay;

/// <summary>
/// A disk of a recorded VM: the image the user named and how the recording reaches it. Writable images are never
/// written: the guest writes into a qcow2 overlay made on the image for each run (recording or replay), so every run
/// starts from the image as it was, which a replay needs.
/// </summary>
/// <param name="Index">The drive's number in the command line (0 for the first disk).</param>
/// <param name="File">The image, as an absolute path.</param>
/// <param name="Format">Its format (the drive's format=, else what qemu-img found).</param>
/// <param name="ReadOnly">A read-only drive (readonly=on, a CD-ROM): used as it is, without an overlay.</param>
/// <param name="Size">The image's length when recorded (a replay refuses an image that changed).</param>
/// <param name="ModifiedUtc">Its modification time when recorded.</param>
public sealed record ReplayDrive(int Index, string File, string Format, bool ReadOnly, long Size, DateTime ModifiedUtc)
{
    /// <summary>The overlay file name of this drive in a run's directory.</summary>
    public string OverlayName => $"drive{Index}.qcow2";
}
