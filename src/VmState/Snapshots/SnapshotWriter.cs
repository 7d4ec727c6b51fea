using VmState.Formats.Elf;
using VmState.Formats.Migration;
using VmState.Formats.Qcow2;
using VmState.IO;
using VmState.Machine;

namespace VmState.Snapshots;

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
    public sealed record Target(string Output, string? Tag = null, bool InPlace = false)
    {
        /// <summary>True when the result is a qcow2 image.</summary>
        public bool IsQcow2 => InPlace || Output.EndsWith(".qcow2", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>Checks a target against the input before any edit is made (so bad requests fail early).</summary>
    public static void Validate(MachineState machine, Target target)
    {
        if (target.IsQcow2 && machine.Qcow2SnapshotId is null)
        {
            throw new ArgumentException($"a qcow2 output needs a qcow2 input (the snapshot's disk); {machine.SourcePath} is a {machine.SourceFormat}: write a migration stream instead");
        }

        bool sameFile = string.Equals(Path.GetFullPath(target.Output), Path.GetFullPath(machine.SourcePath), StringComparison.Ordinal);
        if (sameFile && !target.InPlace)
        {
            throw new ArgumentException($"the output {target.Output} is the input; inputs are never modified unless asked: give another output, or --in-place to add the snapshot to this qcow2 image");
        }

        if (target.InPlace && !string.Equals(Path.GetFullPath(target.Output), Path.GetFullPath(machine.SourcePath), StringComparison.Ordinal))
        {
            throw new ArgumentException("--in-place adds the snapshot to the input image: give the input image as the output too");
        }

        if (target.IsQcow2 && target.Tag is not null)
        {
            Qcow2SnapshotWriter.ValidateName(target.Tag);
        }
    }

    /// <summary>Writes the edited snapshot; returns a one-line description of what was written.</summary>
    public static string Save(SnapshotEditor editor, MachineState machine, Target target, CancellationToken cancellationToken = default)
    {
        Validate(machine, target);
        if (!target.IsQcow2)
        {
            long bytes = editor.Save(target.Output, cancellationToken);
            return $"{target.Output}: migration stream, {bytes:N0} bytes; resume with -incoming \"exec:cat {target.Output}\"";
        }

        using var image = Qcow2Image.Open(machine.SourcePath);
        Qcow2Snapshot base_ = image.Find(machine.Qcow2SnapshotId!)!;
        string tag = target.Tag ?? $"{base_.Name}-edited";
        string stream = ElfCoreWriter.TempPathFor(target.Output + ".vmstate");
        string? copy = null;
        try
        {
            editor.Save(stream, cancellationToken);
            string imagePath = machine.SourcePath;
            if (!target.InPlace)
            {
                copy = ElfCoreWriter.TempPathFor(target.Output);
                File.Copy(machine.SourcePath, copy);
                imagePath = copy;
            }

            using (var vmstate = new FileSource(stream))
            {
                Qcow2SnapshotWriter.AddSnapshot(imagePath, base_.Id, tag, vmstate, cancellationToken);
            }

            if (copy is not null)
            {
                File.Move(copy, target.Output, overwrite: true);
                copy = null;
            }

            return $"{target.Output}: qcow2 image with snapshot \"{tag}\" added; resume with -loadvm {tag}";
        }
        finally
        {
            ElfCoreWriter.TryDelete(stream);
            if (copy is not null)
            {
                ElfCoreWriter.TryDelete(copy);
            }
        }
    }
}
