using VmState.Integration.Harness;

namespace VmState.Integration;

/// <summary>
/// One running fixture guest and a migration stream of it, shared by <see cref="PackageTests"/> and
/// <see cref="ExamplesTests"/>. Both build and run programs with <c>dotnet</c>; one collection keeps them sequential
/// (each build takes a core).
/// </summary>
public sealed class ScriptGuest : IAsyncLifetime
{
    public QemuGuest Guest { get; private set; } = null!;

    /// <summary>The guest's ground truth, read when the stream was taken.</summary>
    public GroundTruth Truth { get; private set; } = null!;

    /// <summary>A migration stream of the guest, taken while it was paused; the guest runs again afterwards.</summary>
    public string StreamPath => Path.Combine(Guest.WorkDir, "script-guest.mig");

    public async Task InitializeAsync()
    {
        Guest = await QemuGuest.StartAsync(new QemuGuestOptions());
        await Guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
        Truth = Guest.Truth;
        await Guest.PauseAsync();
        await Guest.MigrateToFileAsync(StreamPath);
        // migrate leaves the source in postmigrate; cont runs it again (watch-var.cs needs a running guest).
        await Guest.ResumeAsync();
    }

    public async Task DisposeAsync() => await Guest.DisposeAsync();
}
