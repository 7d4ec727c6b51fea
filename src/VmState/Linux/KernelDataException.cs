namespace VmState.Linux;

/// <summary>
/// Thrown when guest kernel data cannot be read or does not have the expected shape: an unmapped pointer, a list that
/// loops without returning to its head, a table that fails its consistency checks, or no kernel found at all. The
/// message names the guest virtual address (when there is one), the structure or kernel object expression read and
/// what was wrong. A <see cref="VmStateException"/>, like <see cref="IO.VmStateFormatException"/> for file-level problems.
/// </summary>
public sealed class KernelDataException : VmStateException
{
    /// <summary>Creates the exception for a problem at guest virtual <paramref name="address"/>.</summary>
    public KernelDataException(ulong address, string structure, string problem, Exception? inner = null)
        : base($"{structure} at 0x{address:x}: {problem}", inner)
    {
        Address = address;
        Structure = structure;
        Problem = problem;
    }

    /// <summary>Creates the exception for a problem with no single address (e.g. nothing found).</summary>
    public KernelDataException(string structure, string problem, Exception? inner = null)
        : base($"{structure}: {problem}", inner)
    {
        Structure = structure;
        Problem = problem;
    }

    /// <summary>The guest virtual address involved, when there is one.</summary>
    public ulong? Address { get; }

    /// <summary>What was being read: the structure or kernel object expression, e.g. "task list (init_task.tasks)".</summary>
    public string Structure { get; }

    /// <summary>What was expected and what was found.</summary>
    public string Problem { get; }
}
