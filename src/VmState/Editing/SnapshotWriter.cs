using VmState.Formats.Migration;
using VmState.Formats.Qcow2;
using VmState.IO;
using VmState.Machine;
using VmState.Snapshots;

namespace VmState.Editing;

/// <summary>
/// Writes an edited snapshot: as a migration stream (any input), or as a new internal snapshot in a copy of the
/// input's qcow2 image (or, only when asked, in the image itself).
/// </summary>
public static class SnapshotWriter
{
    /// <summary>Where and how to write.</summary>
    /// <param name="Output">The output path; a ".qcow2" path means a qcow2 image with the new snapshot added.</param>
    /// <param name="Tag">The new snapshot's name (qcow2 outputs); default "&lt;base name&gt;-edited".</param>
    /// <param name="InPlace">Add the snapshot to the input image itself (qcow2 inputs only).</param>
    /// <param name="OtherInputs">Files besides the snapshot that the edit read (inject: the edited core and hardware
    /// file); no output may be one of them.</param>
    public sealed record Target(string Output, string? Tag = null, bool InPlace = false, IReadOnlyList<string>? OtherInputs = null)
    {
        /// <summary>True when the result is a qcow2 image.</summary>
        public bool IsQcow2 => InPlace || Output.EndsWith(".qcow2", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// Checks a target against the inputs before any edit is made (so bad requests fail early). Files are compared
    /// by identity (device and inode), so a symlink or a hard link to the input is the input.
    /// </summary>
    public static void Validate(MachineState machine, Target target)
    {
        if (target.IsQcow2 && machine.Origin is not Qcow2SnapshotOrigin)
        {
            throw new ArgumentException($"a qcow2 output needs a qcow2 input (the snapshot's disk); {machine.SourcePath} is a {machine.Origin.Description}: write a migration stream instead");
        }

        if (target.IsQcow2 && target.Tag is not null)
        {
            Qcow2SnapshotWriter.ValidateName(target.Tag);
        }

        bool sameFile = FileIdentity.TryGet(target.Output, out FileIdentity output) && FileIdentity.TryGet(machine.SourcePath, out FileIdentity input) && output == input;
        if (target.InPlace)
        {
            if (!sameFile)
            {
                throw new ArgumentException("--in-place adds the snapshot to the input image: give the input image as the output too");
            }

            // The image is the one input that may change; the other inputs still may not be the output.
            OutputRules.ForInputs(target.OtherInputs ?? []).CheckTarget(Path.GetFullPath(target.Output));
            return;
        }

        RulesFor(machine, target).CheckTarget(Path.GetFullPath(target.Output));
    }

    /// <summary>The output rules of <paramref name="target"/>: every input file, and the snapshot's permission.</summary>
    public static OutputRules RulesFor(MachineState machine, Target target) =>
        OutputRules.ForInputs([machine.SourcePath, .. target.OtherInputs ?? []]);

    /// <summary>Writes the edited snapshot; returns a one-line description of what was written.</summary>
    public static string Save(SnapshotEditor editor, MachineState machine, Target target, CancellationToken cancellationToken = default)
    {
        Validate(machine, target);
        OutputRules rules = RulesFor(machine, target);
        if (!target.IsQcow2)
        {
            long bytes = editor.Save(target.Output, rules, cancellationToken);
            return $"{target.Output}: migration stream, {bytes:N0} bytes; resume with -incoming \"exec:cat {target.Output}\"";
        }

        using var image = Qcow2Image.Open(machine.SourcePath);
        Qcow2Snapshot base_ = image.Find(((Qcow2SnapshotOrigin)machine.Origin).SnapshotId)!;
        string tag = target.Tag ?? $"{base_.Name}-edited";
        // The edited vmstate goes to a temporary first (it is read back into the image's clusters); the image is a
        // copy of the input (renamed into place at the end) unless --in-place was asked for.
        using OutputFile stream = OutputFile.Create(target.Output + ".vmstate", rules);
        using (Stream s = stream.OpenStream())
        {
            editor.WriteTo(s, cancellationToken);
        }

        string imagePath = machine.SourcePath;
        OutputFile? copy = null;
        try
        {
            if (!target.InPlace)
            {
                copy = OutputFile.Create(target.Output, rules);
                using (var from = new FileStream(machine.SourcePath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20))
                using (Stream to = copy.OpenStream())
                {
                    from.CopyTo(to, 1 << 20);
                }

                // The qcow2 writer opens the image by path.
                copy.ReleaseForReopen();
                imagePath = copy.TempPath;
            }

            // Read back through our own handle: the temporary is locked against other opens, ours included.
            using (var vmstate = new FileSource(stream.Handle, stream.TempPath))
            {
                Qcow2SnapshotWriter.AddSnapshot(imagePath, base_.Id, tag, vmstate, cancellationToken);
            }

            copy?.Commit();
            return $"{target.Output}: qcow2 image with snapshot \"{tag}\" added; resume with -loadvm {tag}";
        }
        finally
        {
            copy?.Dispose();
        }
    }
}
