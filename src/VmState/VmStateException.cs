namespace VmState;

/// <summary>
/// The root of every error VmState raises about the data it was given: a file that does not have the expected
/// structure (<see cref="IO.VmStateFormatException"/>), guest kernel data that does not make sense
/// (<see cref="Linux.KernelDataException"/>), something looked up that is not there (<see cref="VmStateNotFoundException"/>),
/// an edit refused before anything was written (<see cref="InvalidEditException"/>), and a live VM that went away
/// mid-command (<see cref="LiveVmGoneException"/>). A caller catches this one type to tell bad input from bugs;
/// mistakes in calling the API (null arguments, wrong call order) stay <see cref="ArgumentException"/> and
/// <see cref="InvalidOperationException"/>, and I/O failures of the host stay <see cref="IOException"/>.
/// </summary>
public abstract class VmStateException : Exception
{
    /// <summary>Creates the exception with its message and, optionally, the error that caused it.</summary>
    protected VmStateException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}
