//! Work and logistic transactions: work plans with their records, deliveries with their travel records.
//!
//! A work plan has an owner (the planner) and one party, its assignee; a delivery has an owner (the
//! shipper, who owns the order) and one party, its carrier. Recipient details and positions are sealed
//! (field-level encryption, as customers are), so these tables carry a `key_id` like every sealed table.

use sea_orm_migration::{prelude::*, schema::*};

use crate::common::{OnDelete, VersionedColumns, create_indexes, drop_tables, foreign_key, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organization {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum SalesOrder {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Location {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Device {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum WorkPlan {
    Table,
    Id,
    OwnerOrganizationId,
    AssigneeOrganizationId,
    Title,
    Details,
    OrderId,
    LocationId,
    DeviceId,
    ScheduledStart,
    ScheduledEnd,
    Status,
    RecordCount,
    Version,
    CreatedAt,
    UpdatedAt,
    StartedAt,
    CompletedAt,
}

#[derive(DeriveIden)]
enum WorkRecord {
    Table,
    Id,
    WorkPlanId,
    OrganizationId,
    RecordedBy,
    Description,
    StartedAt,
    EndedAt,
    Minutes,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Delivery {
    Table,
    Id,
    OwnerOrganizationId,
    OrderId,
    CarrierOrganizationId,
    OriginLocationId,
    RecipientSealed,
    KeyId,
    PromisedFrom,
    PromisedUntil,
    Status,
    TravelCount,
    Version,
    CreatedAt,
    UpdatedAt,
    PickedUpAt,
    DeliveredAt,
}

#[derive(DeriveIden)]
enum TravelRecord {
    Table,
    Id,
    DeliveryId,
    Sequence,
    RecordedAt,
    PositionSealed,
    KeyId,
    Status,
    Note,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WorkPlan::Table)
                    .col(uuid(WorkPlan::Id).primary_key())
                    .col(uuid(WorkPlan::OwnerOrganizationId))
                    .col(uuid(WorkPlan::AssigneeOrganizationId))
                    .col(string_len(WorkPlan::Title, 200))
                    .col(string_len_null(WorkPlan::Details, 2000))
                    .col(uuid_null(WorkPlan::OrderId))
                    .col(uuid_null(WorkPlan::LocationId))
                    .col(uuid_null(WorkPlan::DeviceId))
                    .col(timestamp_with_time_zone(WorkPlan::ScheduledStart))
                    .col(timestamp_with_time_zone(WorkPlan::ScheduledEnd))
                    .col(string_len(WorkPlan::Status, 16))
                    .col(integer(WorkPlan::RecordCount).default(0))
                    .versioned(WorkPlan::Version, WorkPlan::CreatedAt, WorkPlan::UpdatedAt)
                    .col(timestamp_with_time_zone_null(WorkPlan::StartedAt))
                    .col(timestamp_with_time_zone_null(WorkPlan::CompletedAt))
                    .check(
                        Expr::col(WorkPlan::ScheduledEnd).gt(Expr::col(WorkPlan::ScheduledStart)),
                    )
                    .foreign_key(&mut foreign_key(
                        "fk_work_plan_owner",
                        (WorkPlan::Table, WorkPlan::OwnerOrganizationId),
                        (Organization::Table, Organization::Id),
                        OnDelete::NoAction,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_work_plan_assignee",
                        (WorkPlan::Table, WorkPlan::AssigneeOrganizationId),
                        (Organization::Table, Organization::Id),
                        OnDelete::NoAction,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_work_plan_order",
                        (WorkPlan::Table, WorkPlan::OrderId),
                        (SalesOrder::Table, SalesOrder::Id),
                        OnDelete::NoAction,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_work_plan_location",
                        (WorkPlan::Table, WorkPlan::LocationId),
                        (Location::Table, Location::Id),
                        OnDelete::NoAction,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_work_plan_device",
                        (WorkPlan::Table, WorkPlan::DeviceId),
                        (Device::Table, Device::Id),
                        OnDelete::NoAction,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WorkRecord::Table)
                    .col(uuid(WorkRecord::Id).primary_key())
                    .col(uuid(WorkRecord::WorkPlanId))
                    .col(uuid(WorkRecord::OrganizationId))
                    .col(uuid_null(WorkRecord::RecordedBy))
                    .col(string_len(WorkRecord::Description, 2000))
                    .col(timestamp_with_time_zone(WorkRecord::StartedAt))
                    .col(timestamp_with_time_zone(WorkRecord::EndedAt))
                    .col(integer(WorkRecord::Minutes))
                    .col(timestamp_with_time_zone(WorkRecord::CreatedAt))
                    .check(Expr::col(WorkRecord::EndedAt).gt(Expr::col(WorkRecord::StartedAt)))
                    .check(Expr::col(WorkRecord::Minutes).gte(0))
                    .foreign_key(&mut foreign_key(
                        "fk_work_record_plan",
                        (WorkRecord::Table, WorkRecord::WorkPlanId),
                        (WorkPlan::Table, WorkPlan::Id),
                        OnDelete::NoAction,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_work_record_organization",
                        (WorkRecord::Table, WorkRecord::OrganizationId),
                        (Organization::Table, Organization::Id),
                        OnDelete::NoAction,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Delivery::Table)
                    .col(uuid(Delivery::Id).primary_key())
                    .col(uuid(Delivery::OwnerOrganizationId))
                    .col(uuid(Delivery::OrderId))
                    .col(uuid(Delivery::CarrierOrganizationId))
                    .col(uuid(Delivery::OriginLocationId))
                    .col(
                        ColumnDef::new(Delivery::RecipientSealed)
                            .binary()
                            .not_null(),
                    )
                    .col(integer(Delivery::KeyId))
                    .col(timestamp_with_time_zone(Delivery::PromisedFrom))
                    .col(timestamp_with_time_zone(Delivery::PromisedUntil))
                    .col(string_len(Delivery::Status, 16))
                    .col(integer(Delivery::TravelCount).default(0))
                    .versioned(Delivery::Version, Delivery::CreatedAt, Delivery::UpdatedAt)
                    .col(timestamp_with_time_zone_null(Delivery::PickedUpAt))
                    .col(timestamp_with_time_zone_null(Delivery::DeliveredAt))
                    .check(Expr::col(Delivery::PromisedUntil).gt(Expr::col(Delivery::PromisedFrom)))
                    .foreign_key(&mut foreign_key(
                        "fk_delivery_owner",
                        (Delivery::Table, Delivery::OwnerOrganizationId),
                        (Organization::Table, Organization::Id),
                        OnDelete::NoAction,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_delivery_order",
                        (Delivery::Table, Delivery::OrderId),
                        (SalesOrder::Table, SalesOrder::Id),
                        OnDelete::NoAction,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_delivery_carrier",
                        (Delivery::Table, Delivery::CarrierOrganizationId),
                        (Organization::Table, Organization::Id),
                        OnDelete::NoAction,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_delivery_origin",
                        (Delivery::Table, Delivery::OriginLocationId),
                        (Location::Table, Location::Id),
                        OnDelete::NoAction,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TravelRecord::Table)
                    .col(uuid(TravelRecord::Id).primary_key())
                    .col(uuid(TravelRecord::DeliveryId))
                    .col(integer(TravelRecord::Sequence))
                    .col(timestamp_with_time_zone(TravelRecord::RecordedAt))
                    .col(
                        ColumnDef::new(TravelRecord::PositionSealed)
                            .binary()
                            .not_null(),
                    )
                    .col(integer(TravelRecord::KeyId))
                    .col(string_len(TravelRecord::Status, 16))
                    .col(string_len_null(TravelRecord::Note, 500))
                    .col(timestamp_with_time_zone(TravelRecord::CreatedAt))
                    .foreign_key(&mut foreign_key(
                        "fk_travel_record_delivery",
                        (TravelRecord::Table, TravelRecord::DeliveryId),
                        (Delivery::Table, Delivery::Id),
                        OnDelete::NoAction,
                    ))
                    .to_owned(),
            )
            .await?;
        let indexes = [
            index(
                "ix_work_plan_owner",
                WorkPlan::Table,
                [WorkPlan::OwnerOrganizationId, WorkPlan::CreatedAt],
            ),
            index(
                "ix_work_plan_assignee",
                WorkPlan::Table,
                [WorkPlan::AssigneeOrganizationId, WorkPlan::CreatedAt],
            ),
            index(
                "ix_work_record_plan",
                WorkRecord::Table,
                [WorkRecord::WorkPlanId, WorkRecord::StartedAt],
            ),
            index(
                "ix_delivery_owner",
                Delivery::Table,
                [Delivery::OwnerOrganizationId, Delivery::CreatedAt],
            ),
            index(
                "ix_delivery_carrier",
                Delivery::Table,
                [Delivery::CarrierOrganizationId, Delivery::CreatedAt],
            ),
            index("ix_delivery_order", Delivery::Table, [Delivery::OrderId]),
            index("ix_delivery_key", Delivery::Table, [Delivery::KeyId]),
            index(
                "ux_travel_record_sequence",
                TravelRecord::Table,
                [TravelRecord::DeliveryId, TravelRecord::Sequence],
            )
            .unique()
            .to_owned(),
            index(
                "ix_travel_record_key",
                TravelRecord::Table,
                [TravelRecord::KeyId],
            ),
        ];
        create_indexes(manager, indexes).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(
            manager,
            [
                TravelRecord::Table.into_iden(),
                Delivery::Table.into_iden(),
                WorkRecord::Table.into_iden(),
                WorkPlan::Table.into_iden(),
            ],
        )
        .await
    }
}
