namespace VmState.Gdb;

/// <summary>
/// The error replies the server sends (GDB manual, "Standard Replies": <c>Enn</c>). gdb shows only that an error
/// happened; the server's log says which.
/// </summary>
internal static class GdbReplies
{
    public const string Malformed = "E01";
    public const string TooLong = "E02";
    public const string NotAuthenticated = "E03";
    public const string NoSuchThread = "E04";
    public const string BadMemory = "E14";
    public const string BadRegisterSize = "E22";
    public const string NoSuchRegister = "E45";
}
