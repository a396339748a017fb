// Adapter: a DynamoDB stream record of the mirror table as the (old, new) pair the event builder takes.
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import type { DynamoDBRecord } from 'aws-lambda';
import { ChangeEventError, type MirrorImage, toMirrorImage } from './change.ts';

export interface StreamChange {
  old: MirrorImage | undefined;
  next: MirrorImage | undefined;
}

type StreamImage = NonNullable<NonNullable<DynamoDBRecord['dynamodb']>['NewImage']>;

function image(raw: StreamImage | undefined): MirrorImage | undefined {
  if (raw === undefined) return undefined;
  // Numbers as JS numbers, like the mirror that wrote them (a huge one loses digits instead of failing).
  const item = unmarshall(raw as Record<string, AttributeValue>, { wrapNumbers: (v: string) => Number(v) });
  return toMirrorImage(item);
}

/** The pair a stream record describes: INSERT (new only), MODIFY (both), REMOVE (old only). */
export function streamChange(record: DynamoDBRecord): StreamChange {
  const images = record.dynamodb;
  if (!images || (images.OldImage === undefined && images.NewImage === undefined)) {
    throw new ChangeEventError(
      'invalid-image',
      `Stream record ${record.eventID ?? '(no id)'} carries no image: the stream must be NEW_AND_OLD_IMAGES.`,
    );
  }
  return {
    old: image(images.OldImage),
    next: record.eventName === 'REMOVE' ? undefined : image(images.NewImage),
  };
}
