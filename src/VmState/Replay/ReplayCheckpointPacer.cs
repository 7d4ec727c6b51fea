namespace VmState.Replay;

/// <summary>
/// Where the index pass saves checkpoints (<see cref="ReplayIndexer.BuildAsync"/>): at every Nth point, or with
/// <see cref="ReplayIndexer.Adaptive"/> at a point once the replay since the last checkpoint took
/// <see cref="ReplayIndexer.AdaptiveReplayPerSave"/> times the last save (the estimate of the next one's cost), so the
/// saves cost at most about that share of the replay whatever the guest's size and the interval.
/// </summary>
internal sealed class ReplayCheckpointPacer
{
    private readonly int _every;
    private int _points;
    private TimeSpan _replayed;
    private TimeSpan _lastSave;

    /// <param name="every">A number of points (above 0), or <see cref="ReplayIndexer.Adaptive"/>.</param>
    /// <param name="powerOnSave">How long the checkpoint at power-on took to save.</param>
    public ReplayCheckpointPacer(int every, TimeSpan powerOnSave)
    {
        if (every <= 0 && every != ReplayIndexer.Adaptive)
        {
            throw new ArgumentOutOfRangeException(nameof(every), every, "a number of points, or ReplayIndexer.Adaptive");
        }

        _every = every;
        _lastSave = powerOnSave;
    }

    /// <summary>A point was reached after <paramref name="replayed"/> of replay since the previous one: whether to save a checkpoint there.</summary>
    public bool Due(TimeSpan replayed)
    {
        _points++;
        _replayed += replayed;
        return _every == ReplayIndexer.Adaptive ? _replayed >= ReplayIndexer.AdaptiveReplayPerSave * _lastSave : _points >= _every;
    }

    /// <summary>A checkpoint was saved in <paramref name="cost"/>: the count starts again (a refused save changes nothing, so the next point is due too).</summary>
    public void Saved(TimeSpan cost) => (_points, _replayed, _lastSave) = (0, TimeSpan.Zero, cost);
}
